"""The releases Iluvatar knows: what a new stack starts from, what each Talos minor allows, and the path across minors.

`TALOS`, `KUBERNETES` and `K3S` are what `iluvatar init` writes, the shipped stacks run and `iluvatar --version` names,
each a release the tests check the program against (the Talos check's machinery v1.14.1 node, the control planes at
Kubernetes 1.35 and the k3s minor in tests/kube); a stack may name any other release the rules accept, and `pulumi up`
rolls a change to it one machine at a time (docs/day2.md). tests/stacks/test_releases.py holds the shipped stacks and
the examples to these.

`TALOS_MINORS` is the Talos compatibility table, one row per minor, as Talos machinery v1.14.1's own
`compatibility/talos1NN` packages state it (MinimumHostUpgradeVersion, MaximumHostDowngradeVersion,
Minimum/MaximumKubernetesVersion); tests/stacks/test_releases.py reads those files and asks the machinery itself, so
the next minor is one row here (and its machinery pinned in tools/upstream/modules.sum).
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks import pins

# The project's pins (stacks.pins, the one place a bump is made).
TALOS = pins.TALOS
KUBERNETES = pins.KUBERNETES
K3S = pins.K3S

Minor = tuple[int, int]
Release = tuple[int, int, int]


@dataclass(frozen=True)
class TalosMinor:
    """One Talos minor: the Kubernetes minors it runs, whom it upgrades, and the release a path goes through."""

    minor: Minor
    # Minimum/MaximumKubernetesVersion: the lowest and highest Kubernetes minor it runs.
    kubernetes: Minor
    # MinimumHostUpgradeVersion: the oldest release it installs over.
    upgrades_from: Release
    # MaximumHostDowngradeVersion (not inclusive): from this release on, installing it would be a downgrade Talos refuses.
    downgrades_below: Release
    # The release a path across minors installs of this minor: its newest patch the Go module proxy serves whole
    # (Talos's own advice: "upgrade to the latest patch release of all intermediate minor releases").
    newest: str
    # Whether a stack may ask for it (arda.talosVersion). A minor that is not a target is only where a path starts:
    # the Talos acceptance check validates configs for the targets alone (tools/talos-check: machinery v1.13.0, the
    # provider's, for 1.12 and 1.13, and v1.14.1, a node's, for 1.14).
    target: bool


TALOS_MINORS: tuple[TalosMinor, ...] = (
    # machinery v1.14.1 compatibility/talos112/talos112.go:16-28. Still a target: main shipped
    # v1.12.4, and updating Iluvatar must never force a stack that keeps its talosVersion to roll two minors.
    TalosMinor((1, 12), (30, 35), (1, 10, 0), (1, 14, 0), "v1.12.11", target=True),
    # compatibility/talos113/talos113.go:16-28
    TalosMinor((1, 13), (31, 36), (1, 11, 0), (1, 15, 0), "v1.13.9", target=True),
    # compatibility/talos114/talos114.go:16-28
    TalosMinor((1, 14), (32, 37), (1, 12, 0), (1, 16, 0), TALOS, target=True),  # the newest minor's newest: the pin
)
BY_MINOR: dict[Minor, TalosMinor] = {row.minor: row for row in TALOS_MINORS}


# The etcd each Talos runs: a control plane's etcd image is `cluster.etcd.image` when its config sets one, else
# `registry.k8s.io/etcd:<DefaultEtcdVersion>` of the Talos it runs (machinery config/types/v1alpha1/v1alpha1_etcdconfig.go:
# 16-24, EtcdConfig.Image, the same at v1.13.9 and v1.14.1; the etcd controller reads it at every config or boot,
# internal/app/machined/pkg/controllers/etcd/config.go:68, and the etcd service pulls and runs that image,
# internal/app/machined/pkg/system/services/etcd.go:103-119 at v1.14.0-rc.1). Iluvatar never sets it (the provider's
# generate leaves it empty: machinery v1.13.0 config/generate/init.go:162-164), so each Talos upgrade moves etcd to that
# Talos's default, a control plane at a time as the roll reboots it. DefaultEtcdVersion (pkg/machinery/constants/
# constants.go) at each release a path or a stack names here: v1.12.4 :466 "v3.6.7", v1.12.11 :466 "v3.6.11", v1.13.0 :428
# "v3.6.9", v1.13.9 :428 "v3.6.12", v1.14.1 :443 "3.7.1" (the tag without its "v" from 1.14 on), and so at every
# release of 1.12 and 1.13 (:466 and :428 of each tag). tests/stacks/test_releases.py reads the pinned machineries'
# (v1.12.4, v1.13.0, v1.14.1) from their source. v1.14.0 is not here: its minor's etcd, 3.7, is all this table says.
ETCD: dict[str, str] = {
    **{f"v1.12.{n}": "3.6.7" for n in range(5)},
    **{"v1.12.5": "3.6.8", "v1.12.6": "3.6.8", "v1.12.7": "3.6.9"},
    **{f"v1.12.{n}": "3.6.11" for n in range(8, 12)},
    "v1.13.0": "3.6.9",
    **{f"v1.13.{n}": "3.6.11" for n in range(1, 4)},
    **{f"v1.13.{n}": "3.6.12" for n in range(4, 10)},
    TALOS: "3.7.1",
}
# The etcd minor of every release of a Talos minor (1.14.0-alpha.0 still had v3.6.9, v1.14.0-rc.1 and v1.14.1 have
# 3.7.1; a stack names a release, never an alpha).
ETCD_MINOR: dict[Minor, Minor] = {(1, 12): (3, 6), (1, 13): (3, 6), (1, 14): (3, 7)}


@dataclass(frozen=True)
class EtcdMove:
    """etcd's move to the next minor with a Talos roll (`talos`, from `before`): `old` and `new` are the releases when this
    table knows the Talos releases on both sides, else the minors (`3.6`)."""

    before: str
    talos: str
    old: str
    new: str


def etcd_of(talos: str) -> str:
    """The etcd a Talos release runs: its DefaultEtcdVersion when ETCD knows it, else its minor's (`3.7`)."""
    if talos in ETCD:
        return ETCD[talos]
    major, minor = ETCD_MINOR[minor_of(talos)]
    return f"{major}.{minor}"


def path_etcd_moves(running: str | None, hops: list[Hop]) -> list[EtcdMove]:
    """etcd_moves of a path's Talos rolls (its last the machines' own steps), from the Talos that runs."""
    rolls = [h.talos for h in hops if h.talos is not None]
    return etcd_moves(running, rolls) if running and rolls else []


def etcd_moves(running: str, rolls: list[str]) -> list[EtcdMove]:
    """The rolls of `rolls` (the Talos releases every machine goes to, in order, from `running`) that move etcd to its
    next minor. etcd upgrades one minor at a time, member by member, the cluster at the lowest member's minor
    meanwhile (etcd server/etcdserver/version/monitor.go:55-103 at v3.7.1, decideClusterVersion)."""
    out: list[EtcdMove] = []
    for before, after in zip([running, *rolls], rolls, strict=False):
        if minor_of(before) in ETCD_MINOR and minor_of(after) in ETCD_MINOR and ETCD_MINOR[minor_of(before)] != ETCD_MINOR[minor_of(after)]:
            out.append(EtcdMove(before, after, etcd_of(before), etcd_of(after)))
    return out


def release(version: str) -> Release:
    """`v1.12.4` (or `v1.35.8+k3s1`) as (1, 12, 4)."""
    major, minor, patch = (int(x) for x in version.removeprefix("v").split("+", 1)[0].split("-", 1)[0].split(".")[:3])
    return major, minor, patch


def minor_of(version: str) -> Minor:
    major, minor, _ = release(version)
    return major, minor


def show(minor: Minor) -> str:
    return f"v{minor[0]}.{minor[1]}"


def undone(running: str, target: str) -> str | None:
    """What a Talos roll back within a minor, from `running` to `target`, undoes, as a message says it: the fixes of the
    patch releases after `target` up to `running` ("the fixes of v1.14.2 and v1.14.3"), or None for no roll back.
    Talos's patch releases within a minor carry security and bug fixes, so a stack reverted or checked out from an
    older commit takes them back from every machine."""
    have, want = release(running), release(target)
    if have[:2] != want[:2] or want >= have:
        return None
    patches = [f"v{have[0]}.{have[1]}.{p}" for p in range(want[2] + 1, have[2] + 1)]
    listed = patches[0] if len(patches) == 1 else f"{', '.join(patches[:-1])} and {patches[-1]}"
    return f"the fixes of {listed}"


def targets() -> list[Minor]:
    """The Talos minors a stack may ask for, oldest first."""
    return [row.minor for row in TALOS_MINORS if row.target]


def target_span() -> str:
    """The supported Talos minors as a person reads them: `v1.13 to v1.14`."""
    known = targets()
    first, last = show(known[0]), show(known[-1])
    return f"{first} only" if first == last else f"{first} to {last}"


# The release a path's Kubernetes step installs of a minor it only passes through (the stack's own minor is the stack's
# `kubernetesVersion`): that minor's newest patch release the Go module proxy serves as k8s.io/kubernetes (its
# `@v/vX.Y.Z.info`, asked on 2026-11-25; 1.30 to 1.33 are past their end of life, so these are their last releases).
# registry.k8s.io publishes every release's component images, which the Kubernetes step's configs name (Talos
# machinery's generate package: `registry.k8s.io/kube-apiserver:v<version>`, constants.go KubernetesAPIServerImage).
# tests/stacks/test_releases.py holds each to its minor; a new Talos row whose floor is above these is one more entry.
# It is also the ceiling of a patch a stack may name (stacks.rules: `v1.34.30` was never released, and Talos's image
# pulls and k3s's download would fail half-way through `up`), hence the date it was asked on, which the message gives.
KUBERNETES_NEWEST_ASKED = "2026-11-25"
KUBERNETES_NEWEST: dict[int, str] = {
    30: "v1.30.14",
    31: "v1.31.14",
    32: "v1.32.13",
    33: "v1.33.13",
    34: "v1.34.12",
    35: "v1.35.8",
    36: "v1.36.3",
}


# The release a Cilium chart step to the next minor names (stacks.day2: Cilium moves one minor at a time): each minor's
# newest patch the Go module proxy serves as github.com/cilium/cilium (its `@v/vX.Y.Z.info`, asked on CILIUM_NEWEST_ASKED;
# Cilium's chart is published at every release, versioned as the release without its v). Cilium's upgrade guide
# (Documentation/operations/upgrade-warning.rst at v1.20.2): "The only tested rollback and upgrade path is between
# consecutive minor releases. Always perform rollbacks and upgrades between one minor release at a time."
CILIUM_NEWEST_ASKED = "2026-11-28"
CILIUM_NEWEST: dict[Minor, str] = {
    (1, 15): "1.15.19",
    (1, 16): "1.16.19",
    (1, 17): "1.17.17",
    (1, 18): "1.18.11",
    (1, 19): "1.19.8",
    (1, 20): "1.20.2",
}


def next_minor_release(running: str, newest: dict[Minor, str]) -> str:
    """The release to write for the minor after `running`'s: its newest patch in `newest`, else `a 1.N release` (a minor
    the table does not hold)."""
    major, minor = minor_of(running)
    return newest.get((major, minor + 1), f"a {major}.{minor + 1} release")


# Rook v1.20 needs Kubernetes 1.31 (its CSI moved to ceph-csi-operator): the floor of stacks.storage's Ceph rule, here so
# that the field rules (stacks.fields, read before the model) can offer a release at it.
ROOK_MIN_KUBERNETES = (1, 31)


def _released_minors(talos: str, floor: int = 0) -> list[int] | None:
    """The Kubernetes minors Talos `talos` runs, from `floor` up, that had a release when KUBERNETES_NEWEST was read; None
    for a Talos minor the table does not hold."""
    row = BY_MINOR.get(minor_of(talos))
    if row is None:
        return None
    low, high = row.kubernetes
    return [m for m in KUBERNETES_NEWEST if max(low, floor) <= m <= high]


def lowest_kubernetes(talos: str) -> str | None:
    """The Kubernetes release to offer a stack whose Kubernetes is below what Talos `talos` runs: the newest patch of the
    lowest minor that Talos runs, at Rook's floor too (so it holds with Ceph on Arda or without). A cluster moves one
    minor at a time (stacks.day2._arda_versions, _talos_path: the path across Talos minors ends its Kubernetes steps
    there), so the newest release would be refused at preview as skipping minors. None for a Talos minor the table does
    not hold."""
    released = _released_minors(talos, ROOK_MIN_KUBERNETES[1])
    return KUBERNETES_NEWEST[min(released)] if released else None


def newest_kubernetes(talos: str) -> str | None:
    """The newest Kubernetes release a stack on Talos `talos` may name: the newest patch (KUBERNETES_NEWEST) of the newest
    minor both that Talos runs (TALOS_MINORS) and that had a release when the table was read; None for a Talos minor the
    table does not hold."""
    released = _released_minors(talos)
    return KUBERNETES_NEWEST[max(released)] if released else None


# The revisions k3s released of a Kubernetes patch (its `+k3sN`), where they are other than `+k3s1` alone: every other
# patch up to KUBERNETES_NEWEST had one release, `+k3s1`. A revision k3s never released has no files to download:
# get.k3s.io's install.sh fetches `releases/download/<version>/sha256sum-<arch>.txt` and stops with "Download failed", so
# a Pi comes up without k3s and `pulumi up`'s k3s step fails half-way. The Go module proxy cannot serve this list (k3s's
# `+k3sN` is build metadata, which a module version cannot carry: it answers 403 for every k3s tag), so it is read from
# k3s's own release notes, one table row per release (k3s-io/docs docs/release-notes/v1.NN.X.md, e.g. v1.32.X.md lists
# v1.32.11+k3s3 and v1.32.11+k3s1 and no +k3s2, v1.34.X.md starts at v1.34.1+k3s1, "the first k3s release in the 1.34
# release line"), on K3S_REVISIONS_READ, for the minors 1.30 (the Ainur's floor, stacks.versions) to KUBERNETES_NEWEST's
# newest. It is refreshed with KUBERNETES_NEWEST: a patch added there is a row here when k3s released it other than as
# +k3s1 alone (tests/stacks/test_releases.py holds the two together).
K3S_REVISIONS_READ = "2026-11-27"
K3S_REVISIONS: dict[str, tuple[int, ...]] = {
    "v1.30.2": (1, 2),
    "v1.30.14": (1, 2),
    "v1.32.11": (1, 3),
    "v1.33.7": (1, 3),
    "v1.34.0": (),  # no k3s release: k3s's 1.34 line starts at v1.34.1+k3s1
    "v1.34.3": (1, 3),
    "v1.35.0": (1, 3),
}


def k3s_revisions(kubernetes: str) -> tuple[int, ...]:
    """The `+k3sN` revisions k3s released of Kubernetes patch `kubernetes` (`v1.35.8`), by K3S_REVISIONS."""
    return K3S_REVISIONS.get(kubernetes, (1,))


@dataclass(frozen=True)
class Hop:
    """One step of a path across Talos minors: every machine rolled to `talos` (a Talos roll), or Arda's Kubernetes
    moved to `kubernetes` (a Kubernetes upgrade, component by component), one minor at a time."""

    talos: str | None = None
    kubernetes: str | None = None

    def __str__(self) -> str:
        return f"Talos {self.talos}" if self.talos is not None else f"Kubernetes {self.kubernetes}"


class PathError(ValueError):
    """No path Talos supports leads from what runs to what the stack asks for; the message says why."""


def talos_path(running_talos: str, running_kubernetes: str, talos: str, kubernetes: str) -> list[Hop]:
    """The steps from what Arda runs to what the stack asks for: the running minor's `newest` release when it runs an
    older patch and the path leaves its minor, each intermediate Talos minor's `newest` release, then `talos`, every
    machine rolled to one before the next; before a roll to a minor whose Kubernetes floor is above what
    runs, Kubernetes one minor at a time up to that floor, each step at its minor's KUBERNETES_NEWEST release but one in
    the stack's own minor, which is `kubernetes`. A Kubernetes minor beyond the floors is not part of it (stacks.day2
    says when it may be). Raises PathError when no such path exists (a minor no row knows, a downgrade, a Kubernetes
    version that no Talos on the way runs, or one the target Talos does not run: the message names the path that
    would work)."""
    start, goal = release(running_talos), release(talos)
    if goal[:2] not in BY_MINOR:
        raise PathError(
            f"Talos {show(goal[:2])} is not in this version of Iluvatar's table (it knows {show(TALOS_MINORS[0].minor)} to {show(TALOS_MINORS[-1].minor)})"
        )
    if start[:2] not in BY_MINOR and start[:2] > TALOS_MINORS[-1].minor:
        raise PathError(
            f"Arda runs Talos {running_talos}, newer than any minor this version of Iluvatar's table knows (it knows "
            f"{show(TALOS_MINORS[0].minor)} to {show(TALOS_MINORS[-1].minor)}); manage it with an Iluvatar that knows {show(start[:2])}"
        )
    if start[:2] not in BY_MINOR:
        # machinery would install a minor over one two minors older (compatibility/talos112/talos112.go:16 at v1.14.1: 1.12
        # over 1.10.0), but Talos migrates a machine between adjacent minors only, from each one's newest patch (its
        # Upgrading Talos guide, "Supported Upgrade Paths"); a path here starts at a row of this table, so a machine on an
        # older minor first walks that path to the oldest row's minor.
        first = TALOS_MINORS[0]
        between = ", then ".join(f"v1.{m}'s newest patch" for m in range(start[1] + 1, first.minor[1]))
        walk = (
            f"{show(start[:2])}'s newest patch, then {between}, then {first.newest}"
            if between
            else f"{show(start[:2])}'s newest patch, then {first.newest}"
        )
        raise PathError(
            f"Arda runs Talos {running_talos}, and a path here starts at a minor this version of Iluvatar's table holds "
            f"({show(first.minor)} to {show(TALOS_MINORS[-1].minor)}): Talos upgrades a machine one minor at a time, from each "
            f"minor's newest patch, and this table has no releases of the minors before {show(first.minor)}; take Arda to "
            f"{first.newest} first along Talos's path ({walk}, each with talosctl upgrade, Talos's Upgrading Talos guide), "
            "then run this again"
        )
    if goal[:2] < start[:2]:
        raise PathError(f"Talos {show(goal[:2])} is older than {running_talos}, which Arda runs; a minor is not rolled back")
    wanted = release(kubernetes)
    kube = release(running_kubernetes)[1]
    hops: list[Hop] = []
    on = BY_MINOR[start[:2]]
    if goal[:2] > start[:2] and start < release(on.newest):
        # Talos's documented path starts at the running minor's newest patch: "upgrade from 1.0
        # to latest patch of 1.0 - to v1.0.6; upgrade from v1.0.6 to latest patch of 1.1 ..." (siderolabs/talos
        # website/content/v1.9/talos-guides/upgrading-talos.md:26-31 at v1.11.0, "Supported Upgrade Paths"); the migrations are
        # tested between latest patches, and the running machined is what runs the upgrade.
        hops.append(Hop(talos=on.newest))
    for minor in range(start[1] + 1, goal[1] + 1):
        row = BY_MINOR[(1, minor)]
        low, high = row.kubernetes
        while kube < low:
            kube += 1
            if kube > on.kubernetes[1]:
                raise PathError(f"Talos {show(on.minor)} runs Kubernetes up to 1.{on.kubernetes[1]}, and Talos {show(row.minor)} needs 1.{low}")
            if kube != wanted[1] and kube not in KUBERNETES_NEWEST:
                # A Kubernetes minor older than this table's: no release of it is known to step through.
                raise PathError(
                    f"Arda runs Kubernetes {running_kubernetes}, and the path to Talos {show(row.minor)} steps through Kubernetes "
                    f"1.{kube}, older than any minor this version of Iluvatar's table knows (from 1.{min(KUBERNETES_NEWEST)}); "
                    f"take Arda's Kubernetes to a 1.{min(KUBERNETES_NEWEST)} release with the Iluvatar that deployed it, then run this again"
                )
            hops.append(Hop(kubernetes=kubernetes if kube == wanted[1] else KUBERNETES_NEWEST[kube]))
        if kube > high:
            raise PathError(f"Kubernetes {running_kubernetes} runs on no Talos {show(row.minor)} (it runs Kubernetes 1.{low} to 1.{high})")
        hops.append(Hop(talos=talos if minor == goal[1] else row.newest))
        on = row
    if goal[:2] == start[:2] and goal != start:
        # Within a minor: one roll (a patch back too, which machinery allows below MaximumHostDowngradeVersion).
        hops.append(Hop(talos=talos))
    low, high = BY_MINOR[goal[:2]].kubernetes
    if not low <= wanted[1] <= high:
        steps = kubernetes_steps(hops)
        works = ""
        if steps:
            # The path's own last Kubernetes step is the stack's version: name a release of that minor that works.
            works = (
                f": the path that works moves Kubernetes on the way ({describe_path(hops)}), with arda.kubernetesVersion a "
                f"{show(minor_of(steps[-1]))} release such as {steps[-1]}"
            )
        raise PathError(f"Talos {show(goal[:2])} runs Kubernetes 1.{low} to 1.{high}, not {kubernetes}{works}")
    return hops


def kubernetes_steps(hops: list[Hop]) -> list[str]:
    """The Kubernetes versions a path moves to on the way, in order."""
    return [h.kubernetes for h in hops if h.kubernetes is not None]


def describe_path(hops: list[Hop]) -> str:
    """`Talos v1.13.9, then Talos v1.14.1` (a Kubernetes step names its release: `Kubernetes v1.31.14`)."""
    return ", then ".join(str(h) for h in hops)
