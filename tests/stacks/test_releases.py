"""The releases Iluvatar knows (stacks.releases): the Talos table is machinery's own, read from its source; the path
across minors, rolled one minor at a time; and the shipped stacks and examples on the releases it names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from stacks import read_stack_file, releases
from stacks.releases import Hop, PathError, talos_path
from tests.edit import HOMELAB, RK1
from tools import upstream

ROOT = Path(__file__).resolve().parents[2]
# The machinery whose compatibility packages the table is read from: the newest pinned (tools/upstream/modules.sum).
MACHINERY = "v1.14.1"
CONSTANTS = ("MinimumHostUpgradeVersion", "MaximumHostDowngradeVersion", "MinimumKubernetesVersion", "MaximumKubernetesVersion")


def _package(minor: tuple[int, int]) -> dict[str, tuple[int, int, int]]:
    """compatibility/talos1NN/talos1NN.go's four versions, as the Go source writes them (semver.MustParse("1.12.0"))."""
    name = f"talos{minor[0]}{minor[1]}"
    text = (upstream.module_dir(upstream.TALOS_MACHINERY, MACHINERY) / "compatibility" / name / f"{name}.go").read_text()
    found = {}
    for constant in CONSTANTS:
        [value] = re.findall(rf'^var {constant} = semver\.MustParse\("([0-9.]+)"\)$', text, re.M)
        found[constant] = releases.release(value)
    return found


@pytest.mark.parametrize("row", releases.TALOS_MINORS, ids=lambda r: f"talos-{r.minor[0]}.{r.minor[1]}")
def test_each_row_is_machinerys_compatibility_package(row: releases.TalosMinor) -> None:
    package = _package(row.minor)
    assert row.upgrades_from == package["MinimumHostUpgradeVersion"]
    assert row.downgrades_below == package["MaximumHostDowngradeVersion"]
    assert row.kubernetes == (package["MinimumKubernetesVersion"][1], package["MaximumKubernetesVersion"][1])
    assert releases.minor_of(row.newest) == row.minor


def test_the_table_covers_every_minor_machinery_knows_from_its_first_row_on() -> None:
    """A minor machinery knows and the table does not is one row to add (and a minor the table knows, one machinery has)."""
    folder = upstream.module_dir(upstream.TALOS_MACHINERY, MACHINERY) / "compatibility"
    known = sorted((1, int(p.name.removeprefix("talos1"))) for p in folder.glob("talos1*") if p.is_dir())
    first = releases.TALOS_MINORS[0].minor
    assert [m for m in known if m >= first] == [row.minor for row in releases.TALOS_MINORS]
    # Contiguous: a path steps through every minor between.
    assert [m[1] for m in (row.minor for row in releases.TALOS_MINORS)] == list(range(first[1], first[1] + len(releases.TALOS_MINORS)))


@pytest.mark.parametrize(
    ("running", "kubernetes", "target", "wanted", "path"),
    [
        # The running minor's newest patch first (Talos's documented path, review M1), unless it runs it already.
        ("v1.12.4", "v1.34.1", "v1.14.1", "v1.34.1", ["Talos v1.12.11", "Talos v1.13.9", "Talos v1.14.1"]),
        ("v1.12.11", "v1.34.1", "v1.14.1", "v1.34.1", ["Talos v1.13.9", "Talos v1.14.1"]),
        ("v1.13.0", "v1.34.1", "v1.14.1", "v1.35.1", ["Talos v1.13.9", "Talos v1.14.1"]),
        ("v1.13.9", "v1.34.1", "v1.14.1", "v1.35.1", ["Talos v1.14.1"]),
        ("v1.14.0", "v1.35.1", "v1.14.1", "v1.35.1", ["Talos v1.14.1"]),  # within a minor: the target is that patch
        ("v1.13.0", "v1.34.1", "v1.13.9", "v1.34.1", ["Talos v1.13.9"]),
        ("v1.14.1", "v1.35.1", "v1.14.1", "v1.35.1", []),
        ("v1.13.9", "v1.35.1", "v1.13.5", "v1.35.1", ["Talos v1.13.5"]),  # a patch back: one roll, machinery allows it
        # Kubernetes on the way: a minor it passes through at that minor's newest release, the stack's own minor at the stack's.
        (
            "v1.12.4",
            "v1.30.2",
            "v1.14.1",
            "v1.32.0",
            ["Talos v1.12.11", "Kubernetes v1.31.14", "Talos v1.13.9", "Kubernetes v1.32.0", "Talos v1.14.1"],
        ),
        ("v1.12.11", "v1.31.0", "v1.14.1", "v1.32.0", ["Talos v1.13.9", "Kubernetes v1.32.0", "Talos v1.14.1"]),
        ("v1.12.4", "v1.30.2", "v1.13.9", "v1.31.5", ["Talos v1.12.11", "Kubernetes v1.31.5", "Talos v1.13.9"]),
        # The stack's minor past the floors: the path's last step is its minor's newest (stacks.day2 refuses the stack).
        ("v1.12.4", "v1.31.0", "v1.14.1", "v1.33.2", ["Talos v1.12.11", "Talos v1.13.9", "Kubernetes v1.32.13", "Talos v1.14.1"]),
    ],
)
def test_a_path_rolls_each_minor_in_turn_with_kubernetes_where_the_next_needs_it(
    running: str, kubernetes: str, target: str, wanted: str, path: list[str]
) -> None:
    assert [str(h) for h in talos_path(running, kubernetes, target, wanted)] == path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("v1.11.3", "v1.33.0", "v1.14.1", "v1.33.0"),
            "Arda runs Talos v1.11.3, and a path here starts at a minor this version of Iluvatar's table holds (v1.12 to v1.14): "
            "Talos upgrades a machine one minor at a time, from each minor's newest patch, and this table has no releases of the "
            "minors before v1.12; take Arda to v1.12.11 first along Talos's path (v1.11's newest patch, then v1.12.11, each with "
            "talosctl upgrade, Talos's Upgrading Talos guide), then run this again",
        ),
        (
            ("v1.15.2", "v1.35.0", "v1.14.1", "v1.35.0"),
            "Arda runs Talos v1.15.2, newer than any minor this version of Iluvatar's table knows (it knows v1.12 to v1.14); manage "
            "it with an Iluvatar that knows v1.15",
        ),
        (("v1.13.0", "v1.35.0", "v1.15.0", "v1.35.0"), "Talos v1.15 is not in this version of Iluvatar's table (it knows v1.12 to v1.14)"),
        (("v1.14.1", "v1.35.0", "v1.13.9", "v1.35.0"), "Talos v1.13 is older than v1.14.1, which Arda runs; a minor is not rolled back"),
        (("v1.13.0", "v1.34.0", "v1.14.1", "v1.31.0"), "Talos v1.14 runs Kubernetes 1.32 to 1.37, not v1.31.0"),
        # A Kubernetes older than the table's first minor, from outputs no deployment of this Iluvatar wrote: said, not a KeyError.
        (
            ("v1.12.4", "v1.28.0", "v1.13.9", "v1.33.0"),
            "Arda runs Kubernetes v1.28.0, and the path to Talos v1.13 steps through Kubernetes 1.29, older than any minor this "
            "version of Iluvatar's table knows (from 1.30); take Arda's Kubernetes to a 1.30 release with the Iluvatar that "
            "deployed it, then run this again",
        ),
        # Kubernetes pinned where the path needs it to move: the path that would work, and the minor to set.
        (
            ("v1.12.4", "v1.30.5", "v1.14.1", "v1.30.5"),
            "Talos v1.14 runs Kubernetes 1.32 to 1.37, not v1.30.5: the path that works moves Kubernetes on the way (Talos v1.12.11, "
            "then Kubernetes v1.31.14, then Talos v1.13.9, then Kubernetes v1.32.13, then Talos v1.14.1), with arda.kubernetesVersion a v1.32 release "
            "such as v1.32.13",
        ),
    ],
)
def test_no_path_says_why(args: tuple[str, str, str, str], message: str) -> None:
    with pytest.raises(PathError) as err:
        talos_path(*args)
    assert str(err.value) == message


MINORS = [row.minor[1] for row in releases.TALOS_MINORS]


@given(
    start=st.sampled_from(MINORS),
    patch=st.integers(0, 20),
    kube=st.integers(28, 38),
    steps=st.integers(0, len(MINORS) - 1),
    wanted=st.integers(28, 40),
)
def test_every_path_steps_one_minor_at_a_time_within_what_each_talos_runs(start: int, patch: int, kube: int, steps: int, wanted: int) -> None:
    low, high = releases.BY_MINOR[(1, start)].kubernetes
    assume(low <= kube <= high)  # what runs, runs: a cluster's Kubernetes is one its Talos runs
    goal = min(start + steps, MINORS[-1])
    target = releases.BY_MINOR[(1, goal)].newest
    try:
        hops = talos_path(f"v1.{start}.{patch}", f"v1.{kube}.0", target, f"v1.{wanted}.0")
    except PathError:
        low, high = releases.BY_MINOR[(1, goal)].kubernetes
        floors_or_ceiling = any(kube > releases.BY_MINOR[(1, m)].kubernetes[1] for m in range(start + 1, goal + 1))
        assert floors_or_ceiling or not low <= wanted <= high
        return
    newest = releases.BY_MINOR[(1, start)].newest
    # Leaving a minor starts at its newest patch (Talos's documented path), unless that is what runs.
    if goal > start:
        assert (hops[:1] == [Hop(talos=newest)]) == (releases.release(newest)[2] > patch)
    talos, running = start, kube
    for hop in hops:
        if hop.talos is not None:
            minor = releases.minor_of(hop.talos)[1]
            assert minor in (talos, talos + 1)  # never two minors at once, never back
            talos = minor
            low, high = releases.BY_MINOR[(1, talos)].kubernetes
            assert low <= running <= high  # each roll lands on a Talos that runs what runs
        else:
            running += 1
            # One minor at a time, at that minor's newest release, or the stack's own in the stack's minor.
            assert hop.kubernetes == (f"v1.{wanted}.0" if running == wanted else releases.KUBERNETES_NEWEST[running])
            assert running <= releases.BY_MINOR[(1, talos)].kubernetes[1]  # the Talos that runs then runs it
    assert talos == goal or (not hops and goal == start)


def test_each_kubernetes_step_on_the_way_is_a_release_of_its_minor() -> None:
    """A path's Kubernetes step through a minor installs that minor's newest release (the Go module proxy's, asked for
    each exactly on 2026-11-25); every minor a target Talos's floor can put on the way is there."""
    assert all(releases.minor_of(v) == (1, m) and releases.release(v)[2] > 0 for m, v in releases.KUBERNETES_NEWEST.items())
    floors = {row.kubernetes[0] for row in releases.TALOS_MINORS if row.target}
    lowest = releases.TALOS_MINORS[0].kubernetes[0]
    assert set(range(lowest, max(floors) + 1)) <= set(releases.KUBERNETES_NEWEST)
    assert releases.KUBERNETES_NEWEST[31] == "v1.31.14"  # 1.31's last release (end of life)


def test_a_hop_reads_as_what_it_moves() -> None:
    assert [str(Hop(talos="v1.13.9")), str(Hop(kubernetes="v1.32.13"))] == ["Talos v1.13.9", "Kubernetes v1.32.13"]
    assert releases.describe_path([Hop(talos="v1.13.9"), Hop(talos="v1.14.1")]) == "Talos v1.13.9, then Talos v1.14.1"


@pytest.mark.parametrize("path", [HOMELAB, RK1, ROOT / "examples" / "Pulumi.minimal.yaml"], ids=lambda p: p.name)
def test_the_shipped_stacks_run_the_releases_iluvatar_names(path: Path) -> None:
    config = read_stack_file(path).config
    assert config["iluvatar:arda"]["talosVersion"] == releases.TALOS
    assert config["iluvatar:arda"]["kubernetesVersion"] == releases.KUBERNETES
    if "iluvatar:ainur" in config:
        assert config["iluvatar:ainur"]["k3sVersion"] == releases.K3S
    # The newest each part supports: the last row's newest Talos, a Kubernetes it runs.
    last = releases.TALOS_MINORS[-1]
    assert last.newest == releases.TALOS
    assert last.kubernetes[0] <= releases.minor_of(releases.KUBERNETES)[1] <= last.kubernetes[1]


@pytest.mark.parametrize("version", ["v1.12.4", "v1.13.0", MACHINERY])
def test_the_etcd_each_pinned_machinery_runs_is_its_default_etcd_version(version: str) -> None:
    """stacks.releases.ETCD holds DefaultEtcdVersion of each release; the pinned machineries' are read from their source."""
    text = (upstream.module_dir(upstream.TALOS_MACHINERY, version) / "constants" / "constants.go").read_text()
    [value] = re.findall(r'^\tDefaultEtcdVersion = "v?([0-9.]+)"$', text, re.M)
    assert releases.ETCD[version] == value
    assert releases.ETCD_MINOR[releases.minor_of(version)] == releases.minor_of(value)


@pytest.mark.parametrize("start", ["v1.12.4", "v1.12.11", "v1.13.0", "v1.13.9"])
def test_every_path_moves_etcds_minor_once_from_a_36_that_may_roll_to_37(start: str) -> None:
    """etcd 3.7's upgrade guide: every 3.6 member at 3.6.11 or later before a rolling upgrade to 3.7 (etcd.io/docs/v3.7/
    upgrades/upgrade_3_7, "Update 3.6"). A path starts at its minor's newest patch, so the roll before 1.14 runs 3.6.12."""
    hops = talos_path(start, "v1.35.1", releases.TALOS, "v1.35.1")
    rolls = [str(h.talos) for h in hops if h.talos is not None]
    [move] = releases.etcd_moves(start, rolls)
    assert (move.before, move.talos, move.old, move.new) == ("v1.13.9", releases.TALOS, "3.6.12", "3.7.1")
    assert releases.release(move.old) >= (3, 6, 11)


def test_the_k3s_revisions_are_of_released_patches_the_table_judges() -> None:
    """Each row of K3S_REVISIONS is a patch no newer than its minor's KUBERNETES_NEWEST, on a minor it holds, with k3s's
    revisions in order from 1 (a row is kept with the patch ceiling it sits under); every other patch has +k3s1 alone."""
    for kubernetes, revisions in releases.K3S_REVISIONS.items():
        _, minor, patch = releases.release(kubernetes)
        assert releases.KUBERNETES_NEWEST[minor] and patch <= releases.release(releases.KUBERNETES_NEWEST[minor])[2]
        assert list(revisions) == sorted(set(revisions)) and all(r >= 1 for r in revisions)
    assert releases.k3s_revisions("v1.35.8") == (1,)
    assert releases.k3s_revisions(releases.K3S.split("+")[0]) == (1,) and releases.K3S.endswith("+k3s1")
