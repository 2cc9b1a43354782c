"""Day-2 rules (stacks.day2): a version change no running machine could make is refused at preview, with the key."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from plans import rollout
from stacks import day2, load_stack_file, pins, releases, storage
from stacks.day2 import DeployedArda, installed
from stacks.model import StackConfig
from stacks.rules import TALOS_KUBERNETES
from tests.edit import HOMELAB, MINIMAL, edit, homelab_doc, write_stack
from tools import talos_check

TALOS = [f"v1.{minor}.{patch}" for minor in (9, 10, 11, 12, 13, 14, 15) for patch in (0, 4)]
KUBERNETES = [f"v1.{minor}.0" for minor in range(28, 38)]


def test_the_upgrade_table_is_machinerys() -> None:
    """Every (target, host) pair our table decides, asked of Talos's own compatibility package (machinery v1.14.1)."""
    pairs = [(t, h, "") for t, h in itertools.product(TALOS, TALOS) if (day2.release(t)[0], day2.release(t)[1]) in day2.TALOS_UPGRADES]
    answers = talos_check.compatibility(pairs)
    ours = [day2.talos_upgrade_problem(t, h) for t, h, _ in pairs]
    assert [(p[:2], a[0] != "") for p, a in zip(pairs, answers, strict=True)] == [(p[:2], o is not None) for p, o in zip(pairs, ours, strict=True)]
    assert sum(o is None for o in ours) > 0 and sum(o is not None for o in ours) > 0


def test_the_kubernetes_support_table_is_machinerys() -> None:
    """Which Kubernetes each supported Talos minor runs (stacks.rules.TALOS_KUBERNETES), asked of machinery."""
    pairs = [(f"v{t[0]}.{t[1]}.0", "", k) for t in TALOS_KUBERNETES for k in KUBERNETES]
    answers = talos_check.compatibility(pairs)
    for (talos, _, kube), (_, why) in zip(pairs, answers, strict=True):
        low, high = TALOS_KUBERNETES[day2.release(talos)[:2]]
        assert (why == "") == (low <= day2.release(kube)[1] <= high), (talos, kube, why)


def _stack(tmp_path: Path, **changes: str) -> StackConfig:
    doc = edit(homelab_doc(), {f"iluvatar:arda.{k}": v for k, v in changes.items()})
    return load_stack_file(write_stack(tmp_path, doc, stack="homelab"))


RUNNING = day2.DeployedArda.from_output({"talosVersion": "v1.13.0", "kubernetesVersion": "v1.35.1", "nodes": {}})
SAME_RUN = (
    "iluvatar:arda.kubernetesVersion",
    "changes from v1.35.1 to v1.36.0 in the same run as arda.talosVersion (v1.13.0 to v1.14.1); upgrade Talos first, then Kubernetes: "
    "keep v1.35.1 for this run, and write v1.36.0 in the next (docs/day2.md#upgrading-kubernetes)",
)


@pytest.mark.parametrize(
    ("changes", "problems"),
    [
        ({}, []),
        ({"talosVersion": "v1.13.5"}, []),
        ({"talosVersion": "v1.13.0", "kubernetesVersion": "v1.36.0"}, []),
        ({"talosVersion": "v1.13.0", "kubernetesVersion": "v1.35.2"}, []),
        (
            {"talosVersion": "v1.13.0", "kubernetesVersion": "v1.35.0"},
            [("iluvatar:arda.kubernetesVersion", "v1.35.0 is older than v1.35.1, which Arda runs; Kubernetes cannot be downgraded")],
        ),
        ({"kubernetesVersion": "v1.36.0"}, [SAME_RUN]),
    ],
)
def test_version_changes_against_what_runs(tmp_path: Path, changes: dict[str, str], problems: list[tuple[str, str]]) -> None:
    assert [(p.path, p.message) for p in day2.check(_stack(tmp_path, **changes), RUNNING)] == problems


def test_a_kubernetes_minor_skipped_is_refused(tmp_path: Path) -> None:
    # Two minors past what runs, each released (Kubernetes 1.37 had none when this Iluvatar was made: stacks.rules refuses it).
    running = day2.DeployedArda.from_output({"talosVersion": "v1.14.1", "kubernetesVersion": "v1.34.1", "nodes": {}})
    assert [(p.path, p.message) for p in day2.check(_stack(tmp_path, kubernetesVersion="v1.36.0"), running)] == [
        ("iluvatar:arda.kubernetesVersion", "v1.36.0 skips a minor: Arda runs v1.34.1, and Kubernetes upgrades one minor at a time (v1.35 first)")
    ]


def _running(talos: str, kubernetes: str) -> DeployedArda:
    return DeployedArda.from_output({"talosVersion": talos, "kubernetesVersion": kubernetes, "nodes": {}})


def test_two_minors_ahead_is_a_path_of_rolls_and_no_problem(tmp_path: Path) -> None:
    stack = _stack(tmp_path, kubernetesVersion="v1.34.1")
    running = _running("v1.12.4", "v1.34.1")
    assert day2.check(stack, running) == []
    assert [str(h) for h in day2.path_of(stack, running)] == ["Talos v1.12.11", "Talos v1.13.9", "Talos v1.14.1"]
    # Kubernetes on the way where a minor needs it, in the same run: the stack's own version in its minor.
    needs = _stack(tmp_path, kubernetesVersion="v1.32.4")
    assert day2.check(needs, _running("v1.12.4", "v1.30.5")) == []
    assert [str(h) for h in day2.path_of(needs, _running("v1.12.4", "v1.30.5"))] == [
        "Talos v1.12.11",
        "Kubernetes v1.31.14",
        "Talos v1.13.9",
        "Kubernetes v1.32.4",
        "Talos v1.14.1",
    ]
    # One minor from its newest patch, or none: no path of rolls beyond the machines' own steps; from an older patch, that patch first.
    assert [str(h) for h in day2.path_of(stack, _running("v1.13.9", "v1.34.1"))] == ["Talos v1.14.1"]
    assert [str(h) for h in day2.path_of(stack, _running("v1.13.0", "v1.34.1"))] == ["Talos v1.13.9", "Talos v1.14.1"]
    assert day2.path_of(stack, _running("v1.14.1", "v1.34.1")) == []


@pytest.mark.parametrize(
    ("running", "changes", "problems"),
    [
        # Kubernetes asked past where the path's steps end: a run of its own, after the path.
        (
            ("v1.12.4", "v1.31.0"),
            {"kubernetesVersion": "v1.33.2"},
            [
                (
                    "iluvatar:arda.kubernetesVersion",
                    "v1.33.2: the path from Talos v1.12.4 to v1.14.1 moves Kubernetes to v1.32 on the way (Talos v1.12.11, then Talos v1.13.9, then Kubernetes "
                    "v1.32.13, then Talos v1.14.1), and a minor past what the path needs is a run of its own, after it (Talos first, then "
                    "Kubernetes): set arda.kubernetesVersion to a v1.32 release for this run (e.g. v1.32.13), then v1.33.2 in the next "
                    "(docs/day2.md#across-talos-minors)",
                )
            ],
        ),
        # A Talos no row knows runs: no path.
        (
            ("v1.11.3", "v1.33.0"),
            {"kubernetesVersion": "v1.33.0"},
            [
                (
                    "iluvatar:arda.talosVersion",
                    "v1.14.1 cannot be rolled out: Arda runs Talos v1.11.3, and a path here starts at a minor this version of Iluvatar's "
                    "table holds (v1.12 to v1.14): Talos upgrades a machine one minor at a time, from each minor's newest patch, and this "
                    "table has no releases of the minors before v1.12; take Arda to v1.12.11 first along Talos's path (v1.11's newest "
                    "patch, then v1.12.11, each with talosctl upgrade, Talos's Upgrading Talos guide), then run this again "
                    "(docs/day2.md#across-talos-minors)",
                )
            ],
        ),
        # Back a minor.
        (
            ("v1.14.1", "v1.35.1"),
            {"talosVersion": "v1.13.9"},
            [
                (
                    "iluvatar:arda.talosVersion",
                    "v1.13.9 cannot be rolled out: Talos v1.13 is older than v1.14.1, which Arda runs; a minor is not rolled back; "
                    "write v1.14.1 back, or a newer release (docs/day2.md#across-talos-minors)",
                )
            ],
        ),
        # A Talos newer than the table knows runs (an Iluvatar newer than this one deployed it): that Iluvatar's.
        (
            ("v1.15.2", "v1.35.1"),
            {},
            [
                (
                    "iluvatar:arda.talosVersion",
                    "v1.14.1 cannot be rolled out: Arda runs Talos v1.15.2, newer than any minor this version of Iluvatar's table knows (it "
                    "knows v1.12 to v1.14); manage it with an Iluvatar that knows v1.15 (docs/day2.md#across-talos-minors)",
                )
            ],
        ),
    ],
)
def test_a_path_that_cannot_be_taken_in_one_run_is_refused_with_the_one_that_can(
    tmp_path: Path, running: tuple[str, str], changes: dict[str, str], problems: list[tuple[str, str]]
) -> None:
    assert [(p.path, p.message) for p in day2.check(_stack(tmp_path, **changes), _running(*running))] == problems


def test_a_kubernetes_upgrade_in_the_run_a_control_plane_leaves_is_refused(tmp_path: Path) -> None:
    """The upgrade moves the machines in the inventory only: a control plane leaving in the same run would keep its old
    API server, in the cluster until its reset, while the kubelets went past it."""
    stack = _stack(tmp_path, kubernetesVersion="v1.36.0")
    valinor = [n for n in stack.nodes if n.role == "valinor"]
    nodes = {n.name: {"mac": n.mac, "role": n.role, "encryption": "kms"} for n in stack.nodes}  # installed encrypted, as now
    gone = {**nodes, "formenos": {"mac": "02:00:00:00:00:99", "role": "valinor"}, "bree": {"mac": "02:00:00:00:00:98", "role": "istari"}}
    leaving = day2.DeployedArda.from_output({"talosVersion": "v1.14.1", "kubernetesVersion": "v1.35.1", "nodes": gone})
    assert [(p.path, p.message) for p in day2.check(stack, leaving)] == [
        (
            "iluvatar:arda.kubernetesVersion",
            "changes from v1.35.1 to v1.36.0 in the same run as control plane(s) formenos leave the inventory: the upgrade moves only the "
            "machines in it, so formenos would serve the API at v1.35.1 while the kubelets go to v1.36.0; take formenos out first (one "
            "pulumi up, keeping v1.35.1), then write v1.36.0 (docs/day2.md#upgrading-kubernetes)",
        )
    ]
    # A worker leaving, a control plane renamed (the same MAC), or no Kubernetes change: nothing to refuse.
    renamed = {**{k: v for k, v in nodes.items() if k != valinor[0].name}, "mindon": nodes[valinor[0].name]}
    for output in (
        {"talosVersion": "v1.14.1", "kubernetesVersion": "v1.35.1", "nodes": {**nodes, "bree": gone["bree"]}},
        {"talosVersion": "v1.14.1", "kubernetesVersion": "v1.35.1", "nodes": renamed},
    ):
        assert day2.check(stack, day2.DeployedArda.from_output(output)) == []
    assert day2.check(_stack(tmp_path), day2.DeployedArda.from_output({**leaving.output, "kubernetesVersion": "v1.35.1"})) == []


def test_every_roll_of_every_path_is_one_machinery_allows() -> None:
    """Why _talos_path checks no roll against machinery's rule: every path over the table's releases (each minor's
    first patches, those around the newest a path goes through, and a later one; the Kubernetes minors the running Talos
    runs) rolls one minor at a time, and every minor installs over the two before it and below the two after. A table
    row that broke this fails here."""
    talos = [
        f"v{row.minor[0]}.{row.minor[1]}.{patch}"
        for row in releases.TALOS_MINORS
        for patch in sorted({0, 1, 30} | {releases.release(row.newest)[2] + d for d in (-1, 0, 1)})
    ]
    paths = 0
    for running, target in itertools.product(talos, talos):
        low, high = releases.BY_MINOR[releases.minor_of(running)].kubernetes
        for kube, wanted in itertools.product(range(low, high + 1), range(low, high + 3)):
            try:
                hops = releases.talos_path(running, f"v1.{kube}.0", target, f"v1.{wanted}.0")
            except releases.PathError:
                continue
            paths += 1
            host = running
            for hop in hops:
                if hop.talos is not None:
                    assert day2.talos_upgrade_problem(hop.talos, host) is None, (running, target, kube, wanted, str(hop))
                    host = hop.talos
    assert paths > 1000


def test_a_talos_the_running_machines_cannot_reach_is_refused(tmp_path: Path) -> None:
    """Machinery's own rule (day2.talos_upgrade_problem), which every roll of a path obeys (above)."""
    assert day2.talos_upgrade_problem("v1.13.0", "v1.10.4") == "Talos 1.13 upgrades machines from 1.11.0 on, and they run v1.10.4"
    assert day2.talos_upgrade_problem("v1.13.0", "v1.15.0") == "Talos 1.13 cannot be installed over v1.15.0, which is 1.15 or newer"
    assert day2.talos_upgrade_problem("v1.14.1", "v1.12.4") is None


def test_a_first_deployment_has_nothing_to_compare_with(tmp_path: Path) -> None:
    assert day2.check(_stack(tmp_path, kubernetesVersion="v1.32.0"), day2.DeployedArda.from_output(None)) == []
    assert day2.check(_stack(tmp_path, kubernetesVersion="v1.32.0"), day2.DeployedArda.from_output({})) == []


def test_a_malformed_output_is_no_config_problem() -> None:
    with pytest.raises(TypeError, match="nodes = 'x', not a mapping"):
        day2.DeployedArda.from_output({"talosVersion": "v1.12.4", "nodes": "x"})


def test_a_machine_is_installed_when_the_last_deployment_had_it_with_its_mac() -> None:
    """What decides whether a machine's change needs netboot and a power-on (components.arda, components.power)."""
    stack = load_stack_file(HOMELAB)
    gandalf = next(n for n in stack.nodes if n.name == "gandalf")
    deployed = DeployedArda.from_output({"talosVersion": "v1.12.4", "nodes": {"gandalf": {"mac": gandalf.mac}, "mithrandir": {"mac": gandalf.mac}}})
    assert installed(gandalf, deployed)
    assert installed(gandalf, deployed, former="mithrandir")  # renamed since: its former name
    assert not installed(gandalf, DeployedArda())  # a first deployment
    assert not installed(gandalf, DeployedArda.from_output({"talosVersion": "v1.12.4", "nodes": {}}))  # new to the inventory
    replaced = DeployedArda.from_output({"talosVersion": "v1.12.4", "nodes": {"gandalf": {"mac": "28:d2:44:30:00:99"}}})
    assert not installed(gandalf, replaced)  # another machine in its place


def _edited(tmp_path: Path, set_: dict[str, object]) -> StackConfig:
    return load_stack_file(write_stack(tmp_path, edit(homelab_doc(), set_), stack="homelab"))


@pytest.mark.parametrize(
    ("k3s", "problems"),
    [
        ("v1.33.6+k3s1", []),
        ("v1.33.7+k3s1", []),
        ("v1.33.12+k3s1", []),
        (
            "v1.33.5+k3s1",
            [
                (
                    day2.K3S,
                    "v1.33.5+k3s1 is older than v1.33.6+k3s1, which the Ainur run; k3s cannot be downgraded (docs/day2.md#upgrading-k3s-on-the-ainur)",
                )
            ],
        ),
        *(
            (
                k3s,
                [
                    (
                        day2.K3S,
                        f"{k3s} embeds etcd 3.6, and the Ainur run v1.33.6+k3s1, whose etcd 3.5 is older than v3.5.26: etcd moves to "
                        f"3.6 safely only from v3.5.26 (older members can bring removed ones back, a reflashed vala among them){skips}; "
                        "set v1.33.12+k3s1 first; the way there, one `pulumi up` each, as `iluvatar versions --previous` lays it out: "
                        f"{way} (docs/day2.md#upgrading-k3s-on-the-ainur)",
                    )
                ],
            )
            # A patch within 1.33 that crosses to etcd 3.6, the next minor, and a minor skip: the stop named first, and the
            # way on from it (stacks.day2.k3s_path), never "v1.34 first".
            for k3s, skips, way in (
                ("v1.33.13+k3s1", "", "v1.33.12+k3s1, v1.33.13+k3s1"),
                ("v1.34.2+k3s1", "", "v1.33.12+k3s1, v1.34.2+k3s1"),
                ("v1.35.0+k3s1", ", and k3s upgrades one minor at a time, as Kubernetes does", "v1.33.12+k3s1, v1.34.x, v1.35.0+k3s1"),
            )
        ),
    ],
)
def test_k3s_moves_forward_one_minor_at_a_time_against_what_the_ainur_run(tmp_path: Path, k3s: str, problems: list[tuple[str, str]]) -> None:
    ainur = {"k3sVersion": "v1.33.6+k3s1", "nodes": {}}
    stack = _edited(tmp_path, {"iluvatar:ainur.k3sVersion": k3s})
    assert [(p.path, p.message) for p in day2.check(stack, day2.DeployedArda(), ainur)] == problems
    assert day2.check(stack, day2.DeployedArda(), None) == []  # a first deployment of the Ainur


@pytest.mark.parametrize(
    ("before", "k3s", "refused"),
    [
        ("v1.33.12+k3s1", "v1.34.2+k3s1", None),  # the stop's etcd 3.5.26 moves to 3.6
        ("v1.33.13+k3s1", "v1.34.2+k3s1", None),  # already on 3.6
        ("v1.34.2+k3s1", "v1.35.8+k3s1", None),
        ("v1.32.9+k3s1", "v1.33.12+k3s1", None),  # 3.5 to 3.5
        ("v1.32.9+k3s1", "v1.33.13+k3s1", "etcd"),
        ("v1.33.11+k3s1", "v1.34.2+k3s1", "etcd"),  # which 1.33 patch first took v3.5.26 is not established: the stop asked
        ("v1.34.2+k3s1", "v1.36.0+k3s1", "skips a minor"),
    ],
)
def test_k3s_crosses_to_etcd_3_6_only_from_the_stop(tmp_path: Path, before: str, k3s: str, refused: str | None) -> None:
    problems = [p.message for p in day2.check(_edited(tmp_path, {"iluvatar:ainur.k3sVersion": k3s}), day2.DeployedArda(), {"k3sVersion": before})]
    if refused is None:
        assert problems == []
    else:
        [message] = problems
        assert (f"embeds etcd 3.6, and the Ainur run {before}" in message) if refused == "etcd" else (refused in message)


@pytest.mark.parametrize(
    ("before", "k3s", "runs"),
    [
        # Below the floor, across etcd's move: the Iluvatar that deployed them first, then this one's way.
        ("v1.28.15+k3s1", "v1.35.8+k3s1", ["v1.29.6+k3s1", "v1.30.14+k3s2", "v1.31.14+k3s1", "v1.32.13+k3s1", "v1.33.12+k3s1", "v1.34.12+k3s1"]),
        ("v1.29.6+k3s1", "v1.35.8+k3s1", ["v1.30.14+k3s2", "v1.31.14+k3s1", "v1.32.13+k3s1", "v1.33.12+k3s1", "v1.34.12+k3s1"]),
        ("v1.33.5+k3s1", "v1.35.8+k3s1", ["v1.33.12+k3s1", "v1.34.12+k3s1"]),
        ("v1.31.4+k3s1", "v1.33.12+k3s1", ["v1.32.13+k3s1"]),
        ("v1.33.6+k3s1", "v1.33.13+k3s1", ["v1.33.12+k3s1"]),
    ],
)
def test_the_k3s_refusals_advice_taken_step_by_step_reaches_the_stacks_release(tmp_path: Path, before: str, k3s: str, runs: list[str]) -> None:
    """What `render --previous` and `up` say of a k3s change that is no single run, followed as written: each release it
    says to set first (a minor's example release) validates and is one run from what runs, and the next refusal starts
    from there, until the stack's own release is accepted; a step "with the Iluvatar that deployed them" is taken as
    that Iluvatar takes it, to a release of the minor it names."""
    running, taken = before, []
    for _ in range(len(runs) + 1):
        refused = [p.message for p in day2.check(_edited(tmp_path, {"iluvatar:ainur.k3sVersion": k3s}), DeployedArda(), {"k3sVersion": running})]
        if not refused:
            break
        [message] = refused
        if (older := re.search(r"up to a (v1\.\d+) release with the Iluvatar that deployed them", message)) is not None:
            running = f"{older.group(1)}.6+k3s1"
        else:
            step = re.search(r"; set (?:a v1\.\d+ release \(e\.g\. (\S+)\)|(\S+)) first; the way there", message)
            assert step is not None, message
            release = step.group(1) or step.group(2)
            # The release validates, and is one run from what runs.
            assert day2.check(_edited(tmp_path, {"iluvatar:ainur.k3sVersion": release}), DeployedArda(), {"k3sVersion": running}) == []
            running = release
        taken.append(running)
    assert taken == runs
    assert day2.check(_edited(tmp_path, {"iluvatar:ainur.k3sVersion": k3s}), DeployedArda(), {"k3sVersion": running}) == []


@pytest.mark.parametrize(
    ("k3s", "refused"),
    [("v1.32.11+k3s1", True), ("v1.32.11+k3s3", False), ("v1.33.1+k3s1", False), ("v1.32.10+k3s1", True)],
)
def test_k3s_own_revision_of_a_release_does_not_go_back(tmp_path: Path, k3s: str, refused: bool) -> None:
    # +k3s3 is k3s's later build of Kubernetes v1.32.11 (it released +k3s1 and +k3s3): going back to +k3s1 is a downgrade, a
    # newer release with +k3s1 is not.
    ainur = {"k3sVersion": "v1.32.11+k3s3", "nodes": {}}
    problems = day2.check(_edited(tmp_path, {"iluvatar:ainur.k3sVersion": k3s}), day2.DeployedArda(), ainur)
    expected = f"{k3s} is older than v1.32.11+k3s3, which the Ainur run; k3s cannot be downgraded (docs/day2.md#upgrading-k3s-on-the-ainur)"
    assert [(p.path, p.message) for p in problems] == ([(day2.K3S, expected)] if refused else [])


def test_k3s_build_orders_the_release_then_k3s_own_revision() -> None:
    assert day2.k3s_build("v1.33.6+k3s2") == (1, 33, 6, 2)
    assert day2.k3s_build("v1.33.6+k3s12") == (1, 33, 6, 12)
    assert day2.k3s_build("v1.33.6") == (1, 33, 6, 0)


def test_a_chart_going_backwards_is_refused(tmp_path: Path) -> None:
    running = day2.DeployedArda.from_output({**RUNNING.output, "charts": {"cilium": "1.18.4", "argocd": "10.8.0"}})
    older = _edited(tmp_path, {"iluvatar:arda.cilium": {"version": "1.18.3"}, "iluvatar:gitops.argocd": {"version": "9.4.0"}})
    assert [(p.path, p.message) for p in day2.check(older, running)] == [
        ("iluvatar:arda.cilium.version", "1.18.3 is older than 1.18.4, which runs; Cilium's chart is not rolled back: keep 1.18.4 or a newer one"),
        ("iluvatar:gitops.argocd.version", "9.4.0 is older than 10.8.0, which runs; Argo CD's chart is not rolled back: keep 10.8.0 or a newer one"),
    ]
    (tmp_path / "newer").mkdir()
    assert day2.check(_edited(tmp_path / "newer", {"iluvatar:arda.cilium": {"version": "1.18.5"}}), running) == []
    assert day2.check(older, RUNNING) == []  # a deployment from before the output had `charts`


def test_cilium_moves_one_minor_at_a_time(tmp_path: Path) -> None:
    stack = _edited(tmp_path, {})  # the pin, 1.18.4
    skip = (
        "iluvatar:arda.cilium.version",
        "1.18.4 skips a minor: Arda runs Cilium {was}, and Cilium upgrades one minor at a time (its upgrade guide: the only "
        "tested upgrade and rollback path is between consecutive minor releases); write {step} first, `pulumi up`, then 1.18.4 "
        "(docs/day2.md#chart-versions)",
    )

    def problems(was: str) -> list[tuple[str, str]]:
        running = day2.DeployedArda.from_output({**RUNNING.output, "charts": {"cilium": was}})
        return [(p.path, p.message) for p in day2.check(stack, running)]

    assert problems("1.17.9") == [] and problems("1.18.0") == []  # the next minor, and a patch
    assert problems("1.16.5") == [(skip[0], skip[1].format(was="1.16.5", step="1.17.17"))]
    # A minor the table holds no release of: the minor is named, not a release that may not exist.
    assert problems("1.13.4") == [(skip[0], skip[1].format(was="1.13.4", step="a 1.14 release"))]
    # Two minors back is a downgrade, said once, as one.
    assert [m for _, m in problems("1.20.2")] == [
        "1.18.4 is older than 1.20.2, which runs; Cilium's chart is not rolled back: keep 1.20.2 or a newer one"
    ]


def test_every_cilium_step_is_a_released_patch_of_its_minor() -> None:
    assert all(releases.minor_of(v) == m and releases.release(v)[2] > 0 for m, v in releases.CILIUM_NEWEST.items())
    # Every minor from the oldest to the pin's: a step names a release for each minor on the way.
    pinned = releases.minor_of(pins.CHARTS["cilium"])
    assert {(1, m) for m in range(min(releases.CILIUM_NEWEST)[1], pinned[1] + 2)} <= set(releases.CILIUM_NEWEST)
    assert releases.next_minor_release("1.16.5", releases.CILIUM_NEWEST) == "1.17.17"
    assert releases.next_minor_release("1.9.0", releases.CILIUM_NEWEST) == "a 1.10 release"


def test_argo_cd_across_its_majors_is_warned_not_refused(tmp_path: Path) -> None:
    stack = _edited(tmp_path, {})  # 10.8.0

    def said(was: str) -> list[str]:
        running = day2.DeployedArda.from_output({**RUNNING.output, "charts": {"cilium": "1.18.4", "argocd": was}})
        assert day2.check(stack, running) == []
        return [p.message for p in day2.warnings(stack, running)]

    assert said("10.1.1") == [] and said("10.8.0") == []
    assert [m.split(":")[0] for m in said("7.0.0")] == [
        "10.8.0 moves Argo CD's chart across 3 major versions from 7.0.0, which runs (8.0.0, 9.0.0, 10.0.0)"
    ]
    assert "v2 to v3" in said("7.0.0")[0] and "v2 to v3" not in said("8.3.0")[0]  # 8.0.0 is the chart that moved to v3
    # Without GitOps there is no Argo CD chart to move.
    doc = yaml.safe_load(MINIMAL.read_text())
    (tmp_path / "minimal").mkdir()
    minimal = load_stack_file(write_stack(tmp_path / "minimal", doc, stack="minimal"))
    assert day2.warnings(minimal, day2.DeployedArda.from_output({**RUNNING.output, "charts": {"cilium": "1.18.4", "argocd": "7.0.0"}})) == []


def test_a_running_machines_role_is_not_changed_in_place(tmp_path: Path) -> None:
    stack = load_stack_file(HOMELAB)
    recorded = {n.name: {"mac": n.mac, "ip": str(n.ip), "role": n.role, "encryption": "kms"} for n in stack.arda_nodes}
    running = day2.DeployedArda.from_output({**RUNNING.output, "nodes": recorded})
    # saruman (nodes[7]) a control plane, alqualonde (nodes[5]) a worker: three control planes still.
    swapped = _edited(tmp_path, {"iluvatar:nodes[7].role": "valinor", "iluvatar:nodes[5].role": "istari"})
    assert [(p.path, p.message.split(", and Talos")[0]) for p in day2.check(swapped, running)] == [
        ("iluvatar:nodes[5].role", "istari, but alqualonde runs as a control plane (valinor)"),
        ("iluvatar:nodes[7].role", "valinor, but saruman runs as a worker (istari)"),
    ]
    # Renamed (same MAC): still the machine that runs; a new MAC is another machine, installed anew.
    (tmp_path / "renamed").mkdir()
    renamed = _edited(
        tmp_path / "renamed", {"iluvatar:nodes[7].role": "valinor", "iluvatar:nodes[7].name": "curumo", "iluvatar:nodes[5].role": "istari"}
    )
    assert [p.path for p in day2.check(renamed, running)] == ["iluvatar:nodes[5].role", "iluvatar:nodes[7].role"]
    replaced = {
        **recorded,
        "saruman": {**recorded["saruman"], "mac": "28:d2:44:30:00:09"},
        "alqualonde": {**recorded["alqualonde"], "mac": "a8:b8:e0:20:00:09"},
    }
    assert day2.check(swapped, day2.DeployedArda.from_output({**RUNNING.output, "nodes": replaced})) == []
    # An output without roles (an older one) says nothing changed.
    unrecorded = {name: {k: v for k, v in entry.items() if k != "role"} for name, entry in recorded.items()}
    assert day2.check(swapped, day2.DeployedArda.from_output({**RUNNING.output, "nodes": unrecorded})) == []


def test_one_control_planes_address_changes_per_run(tmp_path: Path) -> None:
    stack = load_stack_file(HOMELAB)
    running = day2.DeployedArda.from_output(
        {**RUNNING.output, "nodes": {n.name: {"mac": n.mac, "ip": str(n.ip), "role": n.role, "encryption": "kms"} for n in stack.arda_nodes}}
    )
    # taniquetil (nodes[3]) and tirion (nodes[4]) are control planes; gandalf (nodes[6]) a worker.
    one = _edited(tmp_path, {"iluvatar:nodes[3].ip": "192.168.0.24", "iluvatar:nodes[6].ip": "192.168.0.33"})
    assert day2.check(one, running) == []
    (tmp_path / "two").mkdir()
    two = _edited(tmp_path / "two", {"iluvatar:nodes[3].ip": "192.168.0.24", "iluvatar:nodes[4].ip": "192.168.0.25"})
    assert [(p.path, p.message) for p in day2.check(two, running)] == [
        (
            "iluvatar:nodes[4].ip",
            "192.168.0.25: a second control plane's address change in one run (nodes[3] taniquetil moves too); change one control "
            "plane's address per run: write 192.168.0.22 back for this one, and 192.168.0.25 in the next (docs/day2.md#a-changed-address)",
        )
    ]
    # An output written before addresses were kept (no `ip`) says nothing moved: no move, so no problem.
    unrecorded = day2.DeployedArda.from_output(
        {**RUNNING.output, "nodes": {n.name: {"mac": n.mac, "role": n.role, "encryption": "kms"} for n in stack.arda_nodes}}
    )
    assert day2.check(two, unrecorded) == []


# --- What the outputs say, read back exactly -------------------------------------------------------------------------


def test_an_output_without_kubernetes_knows_no_kubernetes_version() -> None:
    # An output written before Kubernetes' version was kept: Talos only, and no Kubernetes move is judged.
    assert day2.DeployedArda.from_output({"talosVersion": "v1.12.4"}).kubernetes_version is None
    assert day2.DeployedArda.from_output({"talosVersion": "v1.12.4", "kubernetesVersion": ""}).kubernetes_version is None


def test_machines_of_reads_a_cluster_outputs_machines_by_name() -> None:
    assert day2.machines_of({"k3sVersion": "v1.33.6+k3s1", "nodes": {"manwe": {"role": "valar"}, 7: {"role": "maia"}, "bad": "x"}}) == {
        "manwe": {"role": "valar"},
        "7": {"role": "maia"},
    }
    assert day2.machines_of({"k3sVersion": "v1.33.6+k3s1"}) == {} == day2.machines_of(None) == day2.machines_of([])
    with pytest.raises(TypeError) as err:
        day2.machines_of({"nodes": ["manwe"]})
    assert str(err.value) == "nodes = ['manwe'], not a mapping of machine to state"


def test_former_names_finds_a_renamed_machine_by_its_mac(tmp_path: Path) -> None:
    stack = _edited(tmp_path, {"iluvatar:nodes[3].name": "valmar"})  # taniquetil, a8:b8:e0:20:00:01, renamed
    previous = {
        "taniquetil": {"mac": "a8:b8:e0:20:00:01"},
        "tirion": {"mac": "a8:b8:e0:20:00:02"},  # the same name and MAC: not renamed
        "gone": {"mac": "aa:aa:aa:aa:aa:aa"},  # no machine now has its MAC
        "nomac": {"role": "valinor"},
    }
    assert day2.former_names(stack, previous) == {"valmar": "taniquetil"}
    assert day2.former_names(stack, {}) == {}


def test_talos_past_its_ceiling_names_the_ceiling() -> None:
    assert day2.talos_upgrade_problem("v1.12.4", "v1.14.1") == "Talos 1.12 cannot be installed over v1.14.1, which is 1.14 or newer"
    assert day2.talos_upgrade_problem("v1.13.0", "v1.10.7") == "Talos 1.13 upgrades machines from 1.11.0 on, and they run v1.10.7"


def test_a_chart_unchecked_for_want_of_a_record_is_warned_of(tmp_path: Path) -> None:
    # Outputs from before `charts` was recorded: the downgrade check has nothing to compare, and says so per chart.
    older = _edited(tmp_path, {"iluvatar:arda.cilium": {"version": "1.18.3"}})
    assert "charts" not in RUNNING.output and day2.check(older, RUNNING) == []
    unchecked = (
        "could not be checked against the release running: the last deployment's outputs record no arda.charts (an older "
        "Iluvatar wrote them), and {name}'s chart is not rolled back{minor}; check with `helm list -A` on Arda that its {name} "
        "release is not newer than {version} (if it is, write that release or a newer one){older}; the next `pulumi up` records it"
    )
    # Cilium's: the minor rule could not check it either, and says the release below which it would have refused.
    minor, older_than = ", nor upgraded across a minor", ", nor older than 1.17 (if it is, write its next minor's release first)"
    assert [(p.path, p.message) for p in day2.warnings(older, RUNNING)] == [
        ("iluvatar:arda.cilium.version", "1.18.3 " + unchecked.format(name="Cilium", version="1.18.3", minor=minor, older=older_than)),
        ("iluvatar:gitops.argocd.version", "10.8.0 " + unchecked.format(name="Argo CD", version="10.8.0", minor="", older="")),
    ]
    recorded = replace(day2.DeployedArda.from_output({**RUNNING.output, "charts": {"cilium": "1.18.4"}}), gitops=False)
    assert day2.warnings(older, recorded) == []  # recorded: checked (argocd unrecorded, with no GitOps deployed, is not yet installed)
    assert day2.warnings(older, day2.DeployedArda.from_output(None)) == []  # a first deployment: nothing runs


def test_a_chart_the_recorded_charts_lack_is_warned_of_by_name(tmp_path: Path) -> None:
    # `charts` recorded, but without a chart this Iluvatar records whenever it installs it (or with null for it, which the
    # program reads back as no key): unknown, said for that chart alone, never read as nothing to check.
    older = _edited(tmp_path, {"iluvatar:arda.cilium": {"version": "1.18.3"}})
    unchecked = (
        "could not be checked against the release running: the last deployment's outputs record no arda.charts.{chart} (every "
        "deployment of this Iluvatar records each chart it installs there: the outputs were edited or cut), and {name}'s chart "
        "is not rolled back{minor}; check with `helm list -A` on Arda that its {name} release is not newer than {version} (if it "
        "is, write that release or a newer one){older}; the next `pulumi up` records it"
    )
    no_cilium = day2.DeployedArda.from_output({**RUNNING.output, "charts": {"argocd": "10.8.0"}})
    assert day2.check(older, no_cilium) == []
    assert [(p.path, p.message) for p in day2.warnings(older, no_cilium)] == [
        (
            "iluvatar:arda.cilium.version",
            "1.18.3 "
            + unchecked.format(
                chart="cilium",
                name="Cilium",
                version="1.18.3",
                minor=", nor upgraded across a minor",
                older=", nor older than 1.17 (if it is, write its next minor's release first)",
            ),
        )
    ]
    # Argo CD's, from a deployment that ran GitOps (it exported gitopsRepoUrls): unknown too.
    no_argocd = day2.DeployedArda.from_output({**RUNNING.output, "charts": {"cilium": "1.18.3"}})
    assert [(p.path, p.message) for p in day2.warnings(older, no_argocd)] == [
        (
            "iluvatar:gitops.argocd.version",
            "10.8.0 " + unchecked.format(chart="argocd", name="Argo CD", version="10.8.0", minor="", older=""),
        )
    ]


def test_every_day2_problem_is_said_together(tmp_path: Path) -> None:
    # The Ainur's k3s going back and a chart going back, in one run: both, k3s's first.
    running = day2.DeployedArda.from_output({**RUNNING.output, "charts": {"cilium": "1.18.5"}})
    problems = day2.check(_edited(tmp_path, {}), running, {"k3sVersion": "v1.35.9+k3s1"})
    assert [p.path for p in problems] == [day2.K3S, "iluvatar:arda.cilium.version"]


def test_without_gitops_only_cilium_is_held_to_what_runs(tmp_path: Path) -> None:
    # The minimal example has no GitOps: Argo CD's version in the output is not compared with a chart it does not install.
    doc = edit(yaml.safe_load(MINIMAL.read_text()), {"iluvatar:arda.cilium": {"version": "1.18.3"}})
    stack = load_stack_file(write_stack(tmp_path, doc, stack="minimal"))
    running = day2.DeployedArda.from_output({**RUNNING.output, "charts": {"cilium": "1.18.4", "argocd": "10.8.0"}})
    assert [(p.path, p.message) for p in day2.check(stack, running)] == [
        ("iluvatar:arda.cilium.version", "1.18.3 is older than 1.18.4, which runs; Cilium's chart is not rolled back: keep 1.18.4 or a newer one")
    ]


def test_two_control_planes_leaving_are_named_together(tmp_path: Path) -> None:
    running = day2.DeployedArda.from_output(
        {
            **RUNNING.output,
            "talosVersion": "v1.14.1",  # the stack's: Kubernetes alone moves
            "nodes": {
                "eressea": {"role": "valinor", "mac": "aa:00:00:00:00:01"},
                "numenor": {"role": "valinor", "mac": "aa:00:00:00:00:02"},
            },
        }
    )
    problems = day2.check(_edited(tmp_path, {"iluvatar:arda.kubernetesVersion": "v1.36.0"}), running)
    assert [p.message for p in problems] == [
        "changes from v1.35.1 to v1.36.0 in the same run as control plane(s) eressea, numenor leave the inventory: the upgrade moves "
        "only the machines in it, so eressea, numenor would serve the API at v1.35.1 while the kubelets go to v1.36.0; take eressea, "
        "numenor out first (one pulumi up, keeping v1.35.1), then write v1.36.0 (docs/day2.md#upgrading-kubernetes)"
    ]


def test_a_deployment_on_main_shipped_talos_keeps_working(tmp_path: Path) -> None:
    # Review H3 of issue #42: a stack that keeps Talos v1.12.4 (main's shipped release) validates and plans no roll.
    stack = _stack(tmp_path, talosVersion="v1.12.4", kubernetesVersion="v1.34.1")
    running = _running("v1.12.4", "v1.34.1")
    assert day2.check(stack, running) == []
    assert day2.path_of(stack, running) == []


def test_a_kind_talos_1_13_added_is_refused_on_a_one_minor_move_from_1_12(tmp_path: Path) -> None:
    # Review M3: a 1.12 to 1.13 move is no roll; each machine stages its new config on the running 1.12, which refuses it.
    probe = [{"apiVersion": "v1alpha1", "kind": "TCPProbeConfig", "name": "x", "endpoint": "192.168.0.1:80"}]
    stack = _edited(tmp_path, {"iluvatar:arda.talosVersion": "v1.13.9", "iluvatar:arda.kubernetesVersion": "v1.34.1", "iluvatar:arda.patches": probe})
    assert [(p.path, p.message) for p in day2.check(stack, _running("v1.12.4", "v1.34.1"))] == [
        (
            "iluvatar:arda.patches[0]",
            "TCPProbeConfig is a config document Talos v1.13 added, and Talos v1.12.4, on which each machine stages its new config, "
            "refuses the whole config for it; remove it, or use it once Arda runs Talos v1.13",
        )
    ]
    assert day2.check(stack, _running("v1.13.0", "v1.34.1")) == []  # on 1.13 already


def test_a_change_of_the_log_stores_claim_is_refused_while_it_runs(tmp_path: Path) -> None:
    """logs.size and logs.storageClass make the store's claim (a StatefulSet's volumeClaimTemplates, which cannot
    change in place): either changing while a store runs is refused with the runbook; the same, or no store, is not."""
    running = day2.DeployedArda.from_output({**RUNNING.output, "logsStore": {"size": "20Gi", "storageClass": "ceph-block"}})
    assert day2.check(_edited(tmp_path, {}), running) == []
    (tmp_path / "changed").mkdir()
    changed = _edited(tmp_path / "changed", {"iluvatar:logs": {"size": "40Gi", "storageClass": "local-path"}})
    assert [(p.path, p.message) for p in day2.check(changed, running)] == [
        (
            "iluvatar:logs.size",
            "40Gi is not 20Gi, the size of the running log store's claim; it cannot be changed by the stack alone: keep 20Gi, "
            "or resize the claim first as docs/day2.md#the-log-stores-size-or-class says",
        ),
        (
            "iluvatar:logs.storageClass",
            "local-path is not ceph-block, the class of the running log store's claim; a claim does not move between classes: "
            "keep ceph-block, or move the store to a new claim as docs/day2.md#the-log-stores-size-or-class says",
        ),
    ]
    # The runbook's way through: logs off (the store goes, its claim stays), then on again with the new settings.
    assert day2.check(changed, RUNNING) == []
    (tmp_path / "off").mkdir()
    assert day2.check(_edited(tmp_path / "off", {"iluvatar:logs": {"enabled": False, "size": "40Gi"}}), running) == []


def test_claim_changed_is_refused_while_logs_stay_off_so_a_later_re_enable_without_it_is_still_held(tmp_path: Path) -> None:
    """`logs.claimChanged` acts only in the `up` that turns logs back on: set while they stay off it is refused
    (whatever the record says), and the record is carried through that `up` regardless (plans.rollout.logs_store), so
    a later re-enable with another size, the flag gone and the claim untouched, is still refused (review 4 M2)."""
    record = {"size": "20Gi", "storageClass": "ceph-block", "running": True, "forwarders": ["manwe", "eonwe", "ilmare"]}
    flagged_off = _edited(tmp_path, {"iluvatar:logs": {"enabled": False, "claimChanged": True}})
    said = (
        "iluvatar:logs.claimChanged",
        "true, but logs stay off in this `up`: it acts only in the `up` that turns them back on, after the claim was changed "
        "by hand; remove it here and set it in that `up`, as docs/day2.md#the-log-stores-size-or-class says",
    )
    for was in (record, {**record, "running": False}, None):
        deployed = day2.DeployedArda.from_output({**RUNNING.output, **({"logsStore": was} if was else {})})
        assert [(p.path, p.message) for p in day2.check(flagged_off, deployed)] == [said], was
    # Were that `up` run anyway (a preview not looked at), its record still holds the claim.
    carried = rollout.logs_store(flagged_off, {"logsStore": record})
    assert carried == {**record, "running": False}
    (tmp_path / "on").mkdir()
    smaller = _edited(tmp_path / "on", {"iluvatar:logs": {"size": "10Gi"}})
    assert [p.path for p in day2.check(smaller, day2.DeployedArda.from_output({**RUNNING.output, "logsStore": carried}))] == ["iluvatar:logs.size"]


def test_the_log_stores_claim_kept_while_logs_were_off_is_refused_a_change_until_said_changed(tmp_path: Path) -> None:
    """Logs turned off keep the claim (plans.rollout.logs_store carries its record, not running): turning them on
    again with another size or class would mount the old claim as it is, so it is refused until `logs.claimChanged`
    says the claim was changed by hand; that flag is itself refused once the store runs (a one-shot). On local-path a
    claim's size bounds nothing (the store's own bound is logs.size), so only its class is held there."""
    kept = day2.DeployedArda.from_output({**RUNNING.output, "logsStore": {"size": "20Gi", "storageClass": "ceph-block", "running": False}})
    runs = day2.DeployedArda.from_output({**RUNNING.output, "logsStore": {"size": "20Gi", "storageClass": "ceph-block", "running": True}})
    bigger = _edited(tmp_path, {"iluvatar:logs": {"size": "40Gi", "storageClass": "ceph-filesystem"}})
    assert [(p.path, p.message) for p in day2.check(bigger, kept)] == [
        (
            "iluvatar:logs.size",
            "40Gi is not 20Gi, the size of the log store's claim, which stayed while logs were off and is mounted as it is when they come "
            "back; it cannot be changed by the stack alone: keep 20Gi, or change the claim by hand and set claimChanged: true, as "
            "docs/day2.md#the-log-stores-size-or-class says",
        ),
        (
            "iluvatar:logs.storageClass",
            "ceph-filesystem is not ceph-block, the class of the log store's claim, which stayed while logs were off and is mounted as it is when "
            "they come back; a claim does not move between classes: keep ceph-block, or delete the claim and set claimChanged: true, "
            "as docs/day2.md#the-log-stores-size-or-class says",
        ),
    ]
    (tmp_path / "said").mkdir()
    said = _edited(tmp_path / "said", {"iluvatar:logs": {"size": "40Gi", "storageClass": "ceph-filesystem", "claimChanged": True}})
    assert day2.check(said, kept) == []
    assert [(p.path, p.message) for p in day2.check(said, runs)] == [
        (
            "iluvatar:logs.claimChanged",
            "true, but the last `up` ran the log store on its claim: it says the claim was changed by hand while logs were off, "
            "in the `up` that turns them back on, once; remove it if that `up` is done, or to change the claim turn logs off first, "
            "without it, as docs/day2.md#the-log-stores-size-or-class says",
        )
    ]
    # local-path: the size may move with logs off (the claim is a folder, unbounded), not the class.
    local = {"size": "20Gi", "storageClass": "local-path"}
    (tmp_path / "local").mkdir()
    grown = _edited(tmp_path / "local", {"iluvatar:logs": {"size": "40Gi", "storageClass": "local-path"}})
    assert day2.check(grown, day2.DeployedArda.from_output({**RUNNING.output, "logsStore": {**local, "running": False}})) == []
    assert [p.path for p in day2.check(grown, day2.DeployedArda.from_output({**RUNNING.output, "logsStore": {**local, "running": True}}))] == [
        "iluvatar:logs.size"
    ]


NETBOOTING_ILMARE: dict[str, object] = {"iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "1a2b3c4d"}


def test_the_service_address_does_not_move_under_netbooted_maiar(tmp_path: Path) -> None:
    """Review 41-3 M3: Ganesha's and kube-vip's address would move for every Pi at once, before any roll step, and each
    netbooted maia's EEPROM names the old one: refused at preview, with the value, the old one and the runbook. A move
    with no maia netbooted, a first deployment, or one from before the address was exported is not refused."""
    from plans import rollout

    for sub in "abc":
        (tmp_path / sub).mkdir()

    before = _edited(tmp_path / "a", NETBOOTING_ILMARE)
    deployed = rollout.ainur_state(before, before.ainur_nodes)
    assert deployed["serviceIp"] == "192.168.0.14" and deployed["nodes"]["ilmare"]["image"]
    moved = _edited(tmp_path / "b", {**NETBOOTING_ILMARE, "iluvatar:ainur.serviceIp": "192.168.0.17"})
    assert [(p.path, p.message) for p in day2.check(moved, day2.DeployedArda(), deployed)] == [
        (
            "iluvatar:ainur.serviceIp",
            "192.168.0.17 moves the service address from 192.168.0.14, which the netbooted maiar ilmare mount their roots from "
            "and their EEPROMs' TFTP_IP names: NFS-Ganesha and kube-vip would move at once and every one of them would hang on "
            "its root, then fail to boot. Set it back to 192.168.0.14, or move them off it first "
            "(docs/layers/ainur.md#moving-the-service-address)",
        )
    ]
    assert day2.check(before, day2.DeployedArda(), deployed) == []
    assert day2.check(moved, day2.DeployedArda(), None) == []
    assert day2.check(moved, day2.DeployedArda(), {k: v for k, v in deployed.items() if k != "serviceIp"}) == []
    # No maia netboots (the runbook's second step): the move is the netboot layer's alone.
    card = _edited(tmp_path / "c", {})
    assert day2.check(card, day2.DeployedArda(), {**rollout.ainur_state(card, card.ainur_nodes), "serviceIp": "192.168.0.17"}) == []


def test_the_service_address_is_read_from_the_dnsmasq_config_of_a_deployment_from_before_it_was_exported(tmp_path: Path) -> None:
    """Review 41-4 N5: outputs written before `ainur.serviceIp` was exported lack it, so the first `up` after the upgrade
    let a move through. The address is read instead from the dnsmasq config that deployment exported (`dnsmasqConf`,
    which listens on it): the move is refused, with the same message; an unchanged address is not; nor is a move
    where neither output names one (nothing to compare)."""
    from plans import rollout
    from plans.netboot import dnsmasq

    for sub in "ab":
        (tmp_path / sub).mkdir()
    before = _edited(tmp_path / "a", NETBOOTING_ILMARE)
    older = {k: v for k, v in rollout.ainur_state(before, before.ainur_nodes).items() if k != "serviceIp"}
    conf = dnsmasq.dnsmasq_conf(before)
    assert "listen-address=192.168.0.14\n" in conf and "listen-address=127.0.0.1\n" in conf
    moved = _edited(tmp_path / "b", {**NETBOOTING_ILMARE, "iluvatar:ainur.serviceIp": "192.168.0.17"})
    problems = day2.check(moved, day2.DeployedArda(), older, conf)
    assert [(p.path, p.message.split(",")[0]) for p in problems] == [
        ("iluvatar:ainur.serviceIp", "192.168.0.17 moves the service address from 192.168.0.14")
    ]
    assert problems == day2.check(moved, day2.DeployedArda(), rollout.ainur_state(before, before.ainur_nodes))
    assert day2.check(before, day2.DeployedArda(), older, conf) == []
    assert day2.check(moved, day2.DeployedArda(), older, None) == []
    assert day2.check(moved, day2.DeployedArda(), older, "listen-address=127.0.0.1\n") == []


FIRST_NETBOOT = Path(__file__).parents[1] / "fixtures" / "outputs-66ca479"


def test_the_service_address_does_not_move_under_maiar_the_first_netboot_version_netbooted(tmp_path: Path) -> None:
    """Review 41-10 M1, the same gap in this rule: the first netboot version's `ainur` output (66ca479's own, the fixture)
    names no netbooting Pi (no `image`), its `dnsmasqConf` tags ilmarë `rpiboot`: the move is refused as from a later
    version; from the same version's outputs for the homelab where no Pi netbooted, it is not."""
    import json

    ainur = json.loads((FIRST_NETBOOT / "netbooting-ainur.json").read_text())
    moved = _edited(tmp_path, {**NETBOOTING_ILMARE, "iluvatar:ainur.serviceIp": "192.168.0.17"})
    assert moved.ainur is not None
    # The k3s it ran as this stack's (the homelab's pin moved on since; the k3s rule is another test's).
    ainur["k3sVersion"] = moved.ainur.k3s_version
    problems = day2.check(moved, day2.DeployedArda(), ainur, (FIRST_NETBOOT / "netbooting-dnsmasq.conf").read_text())
    assert [(p.path, p.message.split(",")[0]) for p in problems] == [
        ("iluvatar:ainur.serviceIp", "192.168.0.17 moves the service address from 192.168.0.14")
    ]
    card = {**json.loads((FIRST_NETBOOT / "card-ainur.json").read_text()), "k3sVersion": moved.ainur.k3s_version}
    assert day2.check(moved, day2.DeployedArda(), card, (FIRST_NETBOOT / "card-dnsmasq.conf").read_text()) == []


# Eonwë and ilmarë netbooting, manwë the one card Pi: local-path roots while no Ainur Pi has a data disk.
TWO_NETBOOTING: dict[str, object] = {
    **NETBOOTING_ILMARE,
    "iluvatar:nodes[1].board": "rpi4",
    "iluvatar:nodes[1].boot": "netboot",
    "iluvatar:nodes[1].serial": "9ffefdef",
}
NO_PI_DISKS = [f"iluvatar:nodes[{i}].dataDisks" for i in range(3)]


def _pis(tmp_path: Path, disks: bool) -> StackConfig:
    tmp_path.mkdir(exist_ok=True)
    local = {} if disks else {"iluvatar:storage.ainur.defaultClass": "local-path"}
    doc = edit(homelab_doc(), {**TWO_NETBOOTING, **local}, delete=[] if disks else NO_PI_DISKS)
    return load_stack_file(write_stack(tmp_path, doc, stack="homelab"))


def test_the_netbooted_roots_class_does_not_change_under_their_protected_claims(tmp_path: Path) -> None:
    """Review 41-6 M3: a card Pi that gains a data disk turns Longhorn on, and the roots' class from local-path to pi-roots;
    a claim's class cannot change and the per-Pi claims are protected, so every preview failed on their replacement with
    the engine's words. Refused at preview, naming the key as the user wrote it and the runbook; the way back too. Not
    refused where the class is unchanged, where the last deployment did not record it, or where no Pi it netbooted still
    netboots."""
    from plans import rollout
    from plans.netboot import pi_pods

    local = _pis(tmp_path / "local", disks=False)
    longhorn = _pis(tmp_path / "longhorn", disks=True)
    for stack in (local, longhorn):
        assert day2.roots_class(stack) == pi_pods.roots_class(stack)
    assert (day2.roots_class(local), day2.roots_class(longhorn)) == ("local-path", "pi-roots")
    ran = rollout.ainur_state(local, local.ainur_nodes)
    assert (ran["rootsClass"], ran["longhornPis"]) == ("local-path", [])
    problems = day2.check(longhorn, day2.DeployedArda(), ran)
    assert [(p.path, p.message) for p in problems] == [
        (
            "iluvatar:nodes[0].dataDisks",
            "[/dev/nvme0n1] makes the netbooted roots' StorageClass pi-roots, and the last deployment put eonwe, ilmare's roots "
            "on local-path (pi-root-eonwe, pi-root-ilmare): a claim's class cannot change and those claims are protected, so "
            "every preview would fail on their replacement. Keep manwe's dataDisks as they were, or move the roots to the new "
            "class first (docs/layers/ainur.md#changing-the-netbooted-roots-class)",
        )
    ]
    back = day2.check(local, day2.DeployedArda(), rollout.ainur_state(longhorn, longhorn.ainur_nodes))
    assert [p.path for p in back] == ["iluvatar:nodes[0].dataDisks"] and back[0].message.startswith(
        "[] (no data disk) makes the netbooted roots' StorageClass local-path, and the last deployment put eonwe, ilmare's roots on pi-roots"
    )
    assert day2.check(local, day2.DeployedArda(), ran) == []
    assert day2.check(longhorn, day2.DeployedArda(), {k: v for k, v in ran.items() if k != "rootsClass"}) == []
    # The Pis it netbooted boot from their cards now (with disks of their own): their claims are no longer the program's.
    (tmp_path / "cards").mkdir()
    cards = _edited(tmp_path / "cards", {})
    assert day2.roots_class(cards) == "pi-roots"
    assert day2.check(cards, day2.DeployedArda(), ran) == []
    # A card Pi's homelab whose class changed because GitOps went on: the key is iluvatar:gitops.
    assert day2.check(longhorn, day2.DeployedArda(), {**ran, "rootsClass": "local-path", "longhornPis": ["manwe"]})[0].path == ("iluvatar:gitops")


def test_a_netbooted_maia_that_held_longhorn_replicas_keeps_its_disk_until_they_are_evicted(tmp_path: Path) -> None:
    """A netbooted maia is no Longhorn Pi (Longhorn's manager must not run for a kubelet whose credentials its NFS root
    exposes), and its next roll taints it, which evicts Longhorn from it. One that held Longhorn's replicas at the last
    deployment is refused while it keeps its dataDisks, naming why and the way (evict, then remove the disk); removing
    the disk says the move was made. A Pi that boots from its card, or outputs without the Longhorn Pis, refuse nothing."""
    for sub in ("two", "moved", "cards"):
        (tmp_path / sub).mkdir()
    stack = _edited(tmp_path / "two", TWO_NETBOOTING)
    assert [n.name for n in storage.longhorn_pis(stack.nodes)] == ["manwe"]
    ran = {**rollout.ainur_state(stack, stack.ainur_nodes), "longhornPis": ["manwe", "eonwe", "ilmare"]}
    problems = day2.check(stack, day2.DeployedArda(), ran)
    assert [p.path for p in problems] == ["iluvatar:nodes[1].dataDisks", "iluvatar:nodes[2].dataDisks"]
    assert problems[0].message == (
        "[/dev/nvme0n1]: eonwe netboots, and a netbooted maia's disk is no Longhorn disk any more: Longhorn's manager, whose "
        "account reads every Secret, must not run for a kubelet whose credentials eonwe's NFS root exposes. The next `up` taints "
        "eonwe and Longhorn leaves it, and the last deployment kept Longhorn replicas there: a volume whose last healthy replica "
        "is on eonwe would be lost. Evict them first (Longhorn's UI: Node eonwe, Edit, Scheduling Disable and Eviction Requested "
        "true; wait until it holds no replica and every volume is healthy), then remove eonwe's dataDisks "
        "(docs/security.md#a-netbooted-maia-that-held-longhorn-replicas)"
    )
    moved = load_stack_file(
        write_stack(
            tmp_path / "moved",
            edit(homelab_doc(), TWO_NETBOOTING, delete=["iluvatar:nodes[1].dataDisks", "iluvatar:nodes[2].dataDisks"]),
            stack="homelab",
        )
    )
    assert day2.check(moved, day2.DeployedArda(), ran) == []
    assert day2.check(stack, day2.DeployedArda(), {k: v for k, v in ran.items() if k != "longhornPis"}) == []
    cards = _edited(tmp_path / "cards", {})
    assert day2.check(cards, day2.DeployedArda(), ran) == []


def test_the_valar_are_asked_whenever_the_output_may_hide_sealed_secrets(tmp_path: Path) -> None:
    """Turning secrets encryption off is no refusal any more: the `up` asks the valar (plans.k3s.secrets_off_script) when
    the output says they ran with it or does not say. Outputs without `secretsEncryption` are "may have": main deployed
    Ainur with the flag on by default before the rewrite step existed, so neither the key nor the step is recorded."""
    for sub in "ab":
        (tmp_path / sub).mkdir()
    on = _edited(tmp_path / "a", {})
    ran = rollout.ainur_state(on, on.ainur_nodes)
    off = _edited(tmp_path / "b", {"iluvatar:ainur.secretsEncryption": False})
    assert day2.check(off, DeployedArda(), ran) == []
    assert day2.may_have_sealed(ran) is True
    # The default-on deployments: neither the key nor the rewrite step.
    older = {k: v for k, v in ran.items() if k != "secretsEncryption"}
    older["commands"] = {k: v for k, v in older["commands"].items() if k != "secrets-rewrite"}
    assert day2.may_have_sealed(older) is True
    assert day2.may_have_sealed(rollout.ainur_state(off, off.ainur_nodes)) is False
    assert day2.may_have_sealed(None) is False
    assert day2.may_have_sealed({"nodes": {}}) is False


def test_an_ainur_whose_rewrite_step_recorded_nothing_is_known_by_its_output() -> None:
    """The flag on, the on step among the commands, and no count of off steps (an Iluvatar before the rewrite step's
    record); not with the count, not without the on step (before_secrets_on's population), not with the flag off."""
    ran = {"secretsEncryption": True, "commands": {"secrets-on": "d", "secrets-rewrite": "e"}}
    assert day2.before_sealed_record(ran) is True
    assert day2.before_sealed_record({**ran, day2.SECRETS_OFFS: 0}) is False
    assert day2.before_sealed_record({**ran, day2.SECRETS_EPOCH: True}) is False
    assert day2.before_sealed_record({**ran, "commands": {"secrets-rewrite": "e"}}) is False
    assert day2.before_sealed_record({**ran, "secretsEncryption": False}) is False
    assert day2.before_sealed_record(None) is False


def test_an_ainur_deployed_with_the_flag_before_the_on_step_is_known_by_its_commands(tmp_path: Path) -> None:
    """ainur-secrets-on is kept while the flag is on (components.ainur): an Ainur an older Iluvatar deployed with the flag
    lists the rewrite step and not it, and its first `up` with it restarts k3s once; one deployed with it, off, or from
    before `commands` were recorded is not told so."""
    for sub in "ab":
        (tmp_path / sub).mkdir()
    on = _edited(tmp_path / "a", {})
    ran = rollout.ainur_state(on, on.ainur_nodes)
    assert "secrets-on" in ran["commands"]
    assert day2.before_secrets_on(ran) is False
    assert day2.before_secrets_on({**ran, "commands": {k: v for k, v in ran["commands"].items() if k != "secrets-on"}}) is True
    off = _edited(tmp_path / "b", {"iluvatar:ainur.secretsEncryption": False})
    assert "secrets-on" not in rollout.ainur_state(off, off.ainur_nodes)["commands"]
    assert day2.before_secrets_on(rollout.ainur_state(off, off.ainur_nodes)) is False
    assert day2.before_secrets_on({k: v for k, v in ran.items() if k != "commands"}) is False
    assert day2.before_secrets_on(None) is False


HEADSCALE_ACCESS = {
    "flavour": "headscale",
    "headscale": {"url": "https://vpn.example.com", "ip": "192.168.0.17"},
    "access": [{"group": "example:family", "members": ["bob@"], "reach": ["apps"]}],
}
NO_BACKUP = [
    "iluvatar:backup",
    "iluvatar:apps[0].backup",
    "iluvatar:apps[1].backup",
    "iluvatar:apps[5].backup",
    "iluvatar:apps[6].backup",
    "iluvatar:backupS3AccessKeyId",
    "iluvatar:backupS3SecretAccessKey",
]


@pytest.mark.parametrize(
    ("changes", "delete", "expected"),
    [
        ({}, [], "longhorn-encrypted"),
        ({"iluvatar:storage.ainur.encrypted": False}, [], "longhorn"),
        (
            {
                "iluvatar:nodes[0].dataDisks": [],
                "iluvatar:nodes[1].dataDisks": [],
                "iluvatar:nodes[2].dataDisks": [],
                "iluvatar:storage.ainur.defaultClass": "local-path",
            },
            [],
            "local-path",
        ),
        ({"iluvatar:storage.ainur.encrypted": False}, NO_BACKUP, "longhorn"),
    ],
)
def test_the_claims_class_is_the_plans(tmp_path: Path, changes: dict[str, object], delete: list[str], expected: str) -> None:
    from plans import storage as storage_plan

    stack = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {**changes, "iluvatar:remoteAccess": HEADSCALE_ACCESS}, delete)))
    assert day2.state_class(stack) == storage_plan.git_mirror_class(stack) == expected
    assert rollout.ainur_state(stack, stack.ainur_nodes)["headscaleClass"] == expected


def test_headscales_claim_changes_class_only_with_a_backup_to_restore(tmp_path: Path) -> None:
    """The class recorded, a change refused without iluvatar:backup; with it (the runbook restores the state), on a first
    deployment, from outputs without the record, or without Headscale, nothing is refused."""
    for sub in "abc":
        (tmp_path / sub).mkdir()
    ran = {"k3sVersion": "v1.35.8+k3s1", "nodes": {}, "secretsEncryption": True, "headscaleClass": "longhorn-encrypted"}
    moved = load_stack_file(
        write_stack(
            tmp_path / "a", edit(homelab_doc(), {"iluvatar:storage.ainur.encrypted": False, "iluvatar:remoteAccess": HEADSCALE_ACCESS}, NO_BACKUP)
        )
    )
    assert [p.path for p in day2.check(moved, DeployedArda(), ran)] == ["iluvatar:storage.ainur.encrypted"]
    assert day2.check(moved, DeployedArda(), None) == []
    assert day2.check(moved, DeployedArda(), {k: v for k, v in ran.items() if k != "headscaleClass"}) == []
    assert day2.check(moved, DeployedArda(), {**ran, "headscaleClass": "longhorn"}) == []
    backed_up = load_stack_file(
        write_stack(tmp_path / "b", edit(homelab_doc(), {"iluvatar:storage.ainur.encrypted": False, "iluvatar:remoteAccess": HEADSCALE_ACCESS}))
    )
    assert day2.check(backed_up, DeployedArda(), ran) == []
    without = load_stack_file(write_stack(tmp_path / "c", edit(homelab_doc(), {"iluvatar:storage.ainur.encrypted": False}, NO_BACKUP)))
    assert day2.check(without, DeployedArda(), ran) == []


# The `storage` output as plans.storage.state writes it: without GitOps no class of either cluster; with it the Ainur's
# (longhorn only with a Pi's data disk).
STORAGE_WITHOUT_GITOPS: dict[str, dict[str, object]] = {"cephOsds": {}, "cephRetiring": {}, "classes": {}}
STORAGE_WITHOUT_LONGHORN = {"cephOsds": {}, "cephRetiring": {}, "classes": {"arda": {"ceph-block": True}, "ainur": {"local-path": True}}}
STORAGE_WITH_LONGHORN = {"cephOsds": {}, "cephRetiring": {}, "classes": {"arda": {"ceph-block": True}, "ainur": {"longhorn": True}}}
CLAIMS_MOVE = (
    "moves the Ainur's claims from {before} to {now}, and Headscale's state claim (protected) cannot change class: it is "
    "replaced by an empty one, and without iluvatar:backup its state has no backup to restore from, so Headscale would "
    "start empty and every device join again. Set it back as it was (the claims on {before}), or set iluvatar:backup "
    "first and move the claim as docs/day2.md#the-ainurs-longhorn-claims-encrypted says (a fresh backup, Headscale scaled down, the "
    "claim unprotected)"
)


def test_longhorn_arriving_under_headscale_is_said_at_the_key_that_brought_it(tmp_path: Path) -> None:
    """Longhorn new on the Ainur (GitOps and a Pi's data disk, both needed): at iluvatar:gitops when the last deployment
    ran without GitOps (its `storage` output lists no class of the Ainur's, or a Pi it recorded among `longhornPis` had
    its roots on local-path), at the first Longhorn Pi's dataDisks when it ran with GitOps."""
    stack = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:remoteAccess": HEADSCALE_ACCESS}, NO_BACKUP)))
    ran = {"k3sVersion": "v1.35.8+k3s1", "nodes": {}, "secretsEncryption": True, "headscaleClass": "local-path"}
    move = CLAIMS_MOVE.format(before="local-path", now="longhorn-encrypted")
    gitops = f"iluvatar:gitops: set (repoUrl https://github.com/example/homelab.git) {move}"
    assert [str(p) for p in day2.check(stack, DeployedArda(), ran, None, STORAGE_WITHOUT_GITOPS)] == [gitops]
    assert [str(p) for p in day2.check(stack, DeployedArda(), {**ran, "rootsClass": "local-path", "longhornPis": ["manwe"]})] == [gitops]
    disks = f"iluvatar:nodes[0].dataDisks: [/dev/nvme0n1] {move}"
    assert [str(p) for p in day2.check(stack, DeployedArda(), ran, None, STORAGE_WITHOUT_LONGHORN)] == [disks]
    # The Pis recorded with the roots on Longhorn's side say which Pi's disk is new.
    assert [p.path for p in day2.check(stack, DeployedArda(), {**ran, "longhornPis": ["manwe"]}, None, STORAGE_WITHOUT_LONGHORN)] == [
        "iluvatar:nodes[1].dataDisks"
    ]


def test_outputs_before_the_claims_class_was_recorded_say_whether_longhorn_ran(tmp_path: Path) -> None:
    """From outputs without `headscaleClass`, Longhorn coming or going is read from the `storage` output's classes, else
    from the netbooted roots' class; a move between Longhorn's two classes cannot be told from them."""
    for sub in "ab":
        (tmp_path / sub).mkdir()
    longhorn = load_stack_file(write_stack(tmp_path / "a", edit(homelab_doc(), {"iluvatar:remoteAccess": HEADSCALE_ACCESS}, NO_BACKUP)))
    without = {
        "iluvatar:remoteAccess": HEADSCALE_ACCESS,
        "iluvatar:nodes[0].dataDisks": [],
        "iluvatar:nodes[1].dataDisks": [],
        "iluvatar:nodes[2].dataDisks": [],
        "iluvatar:storage.ainur.defaultClass": "local-path",
    }
    local = load_stack_file(write_stack(tmp_path / "b", edit(homelab_doc(), without, NO_BACKUP)))
    old = {"k3sVersion": "v1.35.8+k3s1", "nodes": {}, "secretsEncryption": True}
    arrives = (
        f"iluvatar:gitops: set (repoUrl https://github.com/example/homelab.git) {CLAIMS_MOVE.format(before='local-path', now='longhorn-encrypted')}"
    )
    assert [str(p) for p in day2.check(longhorn, DeployedArda(), old, None, STORAGE_WITHOUT_GITOPS)] == [arrives]
    assert [p.path for p in day2.check(longhorn, DeployedArda(), {**old, "rootsClass": "local-path"})] == ["iluvatar:nodes[0].dataDisks"]
    leaves = "iluvatar:nodes: with no Pi that boots from its card holding dataDisks " + CLAIMS_MOVE.format(
        before="longhorn or longhorn-encrypted", now="local-path"
    )
    assert [str(p) for p in day2.check(local, DeployedArda(), old, None, STORAGE_WITH_LONGHORN)] == [leaves]
    assert [str(p) for p in day2.check(local, DeployedArda(), {**old, "rootsClass": "pi-roots"})] == [leaves]
    # Longhorn ran and runs: which of its classes the claim is on, these outputs do not say.
    assert day2.check(longhorn, DeployedArda(), old, None, STORAGE_WITH_LONGHORN) == []
    assert day2.check(local, DeployedArda(), old, None, STORAGE_WITHOUT_LONGHORN) == []
    assert day2.check(local, DeployedArda(), old) == []


def test_ardas_networks_are_recorded_and_kept(tmp_path: Path) -> None:
    """The `arda` output records the subnets Talos runs (the last patch to set each, else its defaults); a change against
    the record is refused at the patch that makes it; nothing on a first deployment or from outputs without the record."""
    for sub in "ab":
        (tmp_path / sub).mkdir()
    stack = _edited(tmp_path / "a", {})
    from plans import bringup

    names = [n.name for n in bringup.rollout_order(stack)]
    recorded = rollout.state(stack, dict.fromkeys(names, "factory.talos.dev/installer/x:v1.14.1"), dict.fromkeys(names, "d1"))["clusterNetwork"]
    assert recorded == day2.arda_subnets(stack) == {"podSubnets": ["10.244.0.0/16"], "serviceSubnets": ["10.96.0.0/12"]}
    patched = _edited(
        tmp_path / "b",
        {
            "iluvatar:arda.patches": [
                {"cluster": {"network": {"podSubnets": ["10.200.0.0/16"]}}},
                {"cluster": {"network": {"podSubnets": ["172.20.0.0/16"]}}},
            ]
        },
    )
    assert day2.arda_subnets(patched) == {"podSubnets": ["172.20.0.0/16"], "serviceSubnets": ["10.96.0.0/12"]}
    running = {"talosVersion": "v1.14.1", "kubernetesVersion": "v1.35.1", "nodes": {}}
    assert [p.path for p in day2.check(patched, DeployedArda.from_output({**running, "clusterNetwork": recorded}))] == [
        "iluvatar:arda.patches[1].cluster.network.podSubnets"
    ]
    # An output without the record cannot tell the patch from a move: refused, with the way to say Arda runs it.
    assert [p.path for p in day2.check(patched, DeployedArda.from_output(running))] == ["iluvatar:arda.patches[1].cluster.network.podSubnets"]
    assert day2.check(patched, DeployedArda()) == []
    assert day2.check(stack, DeployedArda.from_output({**running, "clusterNetwork": recorded})) == []


def test_subnets_over_an_output_that_did_not_record_them(tmp_path: Path) -> None:
    """Without `clusterNetwork` in the output, Talos's defaults pass, a non-default subnet is refused, and
    arda.subnetsRunning lets it through (that `up` records it)."""
    for sub in "abc":
        (tmp_path / sub).mkdir()
    old = DeployedArda.from_output({"talosVersion": "v1.14.1", "kubernetesVersion": "v1.35.1", "nodes": {}})
    moved: dict[str, object] = {"iluvatar:arda.patches": [{"cluster": {"network": {"serviceSubnets": ["10.112.0.0/12"]}}}]}
    assert day2.check(_edited(tmp_path / "a", {}), old, None) == []
    assert [p.path for p in day2.check(_edited(tmp_path / "b", moved), old, None)] == ["iluvatar:arda.patches[0].cluster.network.serviceSubnets"]
    assert day2.check(_edited(tmp_path / "c", {**moved, "iluvatar:arda.subnetsRunning": True}), old, None) == []


def test_the_pis_certificate_dates_printed_hidden_are_read_as_unrecorded_not_refused() -> None:
    """Deployments before the dates were unsecreted print each Pi's certificate end and clock as "[secret]" (the k3s
    step's stdout is a secret): the outputs are still read, the dates as unrecorded; any other read output hidden is named."""
    outputs = {"ainur": {"k3sVersion": "[secret]", "certificates": {"eonwe": {"end": "[secret]", "clock": "[secret]", "trigger": "t1"}}}}
    assert day2.hidden(outputs) == ["ainur.k3sVersion"]
    assert rollout.recorded_certificates(outputs["ainur"], "eonwe") == {"trigger": "t1"}


@pytest.mark.parametrize(
    ("outputs", "path"),
    [
        ({"storage": {"cephOsds": {"tirion": None}}}, "storage.cephOsds.tirion"),
        ({"storage": {"cephRetiring": {"tirion": None}}}, "storage.cephRetiring.tirion"),
        ({"arda": {"nodes": {"tirion": None}}}, "arda.nodes.tirion"),
    ],
)
def test_a_null_entry_of_the_outputs_is_refused_not_read_as_nothing(outputs: dict[str, Any], path: str) -> None:
    """This program never writes a machine's entry null: read as absent, `storage.cephOsds.<node>: null` would let a
    data disk leave with no retire step."""
    kind = "a mapping" if path.startswith("arda") else "a list"
    assert day2.unreadable(outputs) == (
        f"{path} is null, but this program writes it as {kind}, never null: what it recorded cannot be read; "
        "give the outputs `pulumi stack output --json` writes"
    )


@pytest.mark.parametrize(
    ("version", "shown"), [("latest", '"latest"'), ("1.18", '"1.18"'), ("v1.18.4", '"v1.18.4"'), (118, "118"), (["1.18.4"], '["1.18.4"]')]
)
def test_a_chart_version_the_outputs_hold_in_another_form_is_refused(version: object, shown: str) -> None:
    """A deployment records each chart's version as the model takes it (three numbers): another form is an edit the
    chart checks cannot compare (before, `release()` raised on it, a traceback in preview and render)."""
    outputs = {"arda": {"charts": {"cilium": version}}}
    assert day2.unreadable(outputs) == (
        f"arda.charts.cilium is {shown}, not a chart version (three numbers, e.g. 1.18.4), as this program writes it; "
        "give the outputs `pulumi stack output --json` writes"
    )
    assert day2.unreadable({"arda": {"charts": {"cilium": "1.18.4", "argocd": None}}}) is None


@pytest.mark.parametrize("network", [{"podSubnets": None, "serviceSubnets": ["10.96.0.0/12"]}, {"serviceSubnets": ["10.96.0.0/12"]}, {}])
def test_a_subnet_key_null_or_missing_in_the_record_reads_as_unrecorded(tmp_path: Path, network: dict[str, Any]) -> None:
    """A recorded clusterNetwork lacking podSubnets (or holding null, which preview sees as missing) recorded nothing of
    it: a move is refused as over an unrecorded network, and subnetsRunning, the fix it gives, then validates."""
    for sub in "ab":
        (tmp_path / sub).mkdir()
    old = DeployedArda.from_output({"talosVersion": "v1.14.1", "kubernetesVersion": "v1.35.1", "nodes": {}, "clusterNetwork": network})
    moved: dict[str, object] = {"iluvatar:arda.patches": [{"cluster": {"network": {"podSubnets": ["10.42.0.0/16"]}}}]}
    assert [(p.path, p.message) for p in day2.check(_edited(tmp_path / "a", moved), old, None)] == [
        (
            "iluvatar:arda.patches[0].cluster.network.podSubnets",
            "[10.42.0.0/16], but the last deployment did not record the pod network Arda runs (an Iluvatar before it was "
            "recorded), so preview cannot tell this from a move, and a move is fixed when the cluster is made (every Service "
            "and machine keeps its address from the old one: pods resolve nothing). Check with kubectl get nodes -o "
            "jsonpath='{.items[*].spec.podCIDR}' (each machine's share of the pod network): if Arda runs Talos's default "
            "10.244.0.0/16, remove this and renumber instead what of the LAN meets it; if it already runs [10.42.0.0/16], "
            "write iluvatar:arda.subnetsRunning: true for one `up`, which records it",
        )
    ]
    assert day2.check(_edited(tmp_path / "b", {**moved, "iluvatar:arda.subnetsRunning": True}), old, None) == []
