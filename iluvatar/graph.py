"""The engine's dependency graph of a simulated run: what waits for what in `pulumi up`.

The engine creates a resource only once everything it depends on exists, and it learns those
dependencies from the registration itself (`RegisterResourceRequest`):
- `dependencies`: `depends_on`, plus every resource an input came from (the SDK adds those);
- `propertyDependencies`: for each input, the resources its value came from;
- the parent (a child is registered with its parent's URN, which the SDK awaits);
- the provider (a custom resource is registered with its provider's reference, `urn::id`, whose id
  exists only once the provider is configured).

`Graph` holds those edges for every registration of a `Simulation`, so the tests can ask whether
one resource necessarily comes after another (the bring-up invariants) and `plan.txt` can show why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache

from iluvatar.simulate import Registration, Simulation


def provider_urn(reference: str) -> str:
    """A provider reference (`<urn>::<id>`) as the provider's URN."""
    return reference.rsplit("::", 1)[0] if reference else ""


@dataclass(frozen=True)
class Edge:
    """Why `dependent` waits for `dependency`: `after` (depends_on), an input (its name), `parent` or `provider`."""

    dependent: str
    dependency: str
    why: str


@dataclass
class Graph:
    """Every registration and the edges the engine orders it by."""

    registrations: dict[str, Registration]
    edges: dict[str, tuple[Edge, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, sim: Simulation) -> Graph:
        regs = {r.urn: r for r in sim.registrations}
        return cls(regs, {urn: tuple(_edges(reg, regs)) for urn, reg in regs.items()})

    def __post_init__(self) -> None:
        # Ancestor sets are asked for many times by the invariant tests; the graph never changes.
        self._ancestors = cache(self._compute_ancestors)

    def named(self, name: str) -> Registration:
        found = [r for r in self.registrations.values() if r.name == name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} registrations named {name!r}")
        return found[0]

    def dependencies(self, urn: str) -> set[str]:
        """The resources `urn` waits for directly."""
        return {e.dependency for e in self.edges.get(urn, ())}

    def _compute_ancestors(self, urn: str) -> frozenset[str]:
        seen: set[str] = set()
        stack = list(self.dependencies(urn))
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(self.dependencies(current) - seen)
        return frozenset(seen)

    def ancestors(self, urn: str) -> frozenset[str]:
        """Everything `urn` waits for, directly or through others: what exists before it is created."""
        return self._ancestors(urn)

    def after(self, later: Registration, earlier: Registration) -> bool:
        """Whether the engine necessarily creates `earlier` before `later`."""
        return earlier.urn in self.ancestors(later.urn)

    def path(self, later: Registration, earlier: Registration) -> list[Edge]:
        """One chain of edges from `later` back to `earlier` (empty when there is none): the why of `after`."""
        previous: dict[str, Edge] = {}
        queue = [later.urn]
        while queue:
            current = queue.pop(0)
            if current == earlier.urn:
                chain: list[Edge] = []
                while current != later.urn:
                    edge = previous[current]
                    chain.append(edge)
                    current = edge.dependent
                return chain[::-1]
            for edge in self.edges.get(current, ()):
                if edge.dependency not in previous and edge.dependency != later.urn:
                    previous[edge.dependency] = edge
                    queue.append(edge.dependency)
        return []

    def order(self) -> list[Registration]:
        """A creation order the engine could follow: dependencies first, registration order otherwise."""
        position = {urn: i for i, urn in enumerate(self.registrations)}
        done: set[str] = set()
        out: list[Registration] = []

        def visit(urn: str, trail: tuple[str, ...]) -> None:
            if urn in done:
                return
            if urn in trail:
                raise ValueError(f"dependency cycle: {' -> '.join(self.registrations[u].name for u in (*trail, urn))}")
            for dep in sorted(self.dependencies(urn), key=lambda u: position.get(u, -1)):
                if dep in self.registrations:
                    visit(dep, (*trail, urn))
            done.add(urn)
            out.append(self.registrations[urn])

        for urn in self.registrations:
            visit(urn, ())
        return out

    def of_type(self, *types: str) -> Iterator[Registration]:
        return (r for r in self.registrations.values() if r.type in types)


def _edges(reg: Registration, regs: dict[str, Registration]) -> Iterable[Edge]:
    """The edges of one registration, each dependency once, with the most telling reason."""
    reasons: dict[str, str] = {}
    for key, urns in reg.property_dependencies.items():
        for urn in urns:
            reasons.setdefault(urn, key)
    for urn in reg.dependencies:
        reasons.setdefault(urn, "after")
    if reg.parent in regs:
        reasons.setdefault(reg.parent, "parent")
    for reference in (reg.provider, *reg.providers.values()):
        if provider_urn(reference) in regs:
            reasons.setdefault(provider_urn(reference), "provider")
    return [Edge(reg.urn, urn, why) for urn, why in sorted(reasons.items())]


# --- What the engine's state commands do with a stack's state ------------------------------------
#
# `pulumi state delete` and `pulumi up --replace`, as engine v3.259.0 decides them, over the state a
# simulated run would leave (one entry per registration, in registration order). Each rule follows
# the engine's code, cited by file and line in github.com/pulumi/pulumi at tag v3.259.0.

# pkg/resource/state.go:340-359, the kinds of StateDependency.
PARENT, DEPENDENCY, PROPERTY_DEPENDENCY, DELETED_WITH = "parent", "dependency", "property-dependency", "deleted-with"


@dataclass(frozen=True)
class StateEntry:
    """One resource of a stack's state (pkg/resource/state.go's State): what the dependency graph reads of it."""

    urn: str
    id: str
    parent: str
    provider: str  # the provider reference, `<urn>::<id>` (empty for a component or a provider)
    dependencies: tuple[str, ...]
    property_dependencies: dict[str, tuple[str, ...]]
    deleted_with: str
    protect: bool
    # What pulumi-command runs when the resource is deleted (its `delete` input), for a command: None when nothing runs.
    delete_command: str | None = None
    # The program's deleteBeforeReplace (None: the provider's choice, create first for pulumi-command).
    delete_before_replace: bool | None = None

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    def all_dependencies(self) -> tuple[str, list[tuple[str, str]]]:
        """State.GetAllDependencies (state.go:366-392): the provider reference, then (kind, URN) for the parent,
        each dependency, each property dependency and deletedWith, empty URNs left out."""
        found: list[tuple[str, str]] = []
        if self.parent:  # state.go:368-370
            found.append((PARENT, self.parent))
        found += [(DEPENDENCY, urn) for urn in self.dependencies if urn]  # state.go:371-375
        found += [(PROPERTY_DEPENDENCY, urn) for urns in self.property_dependencies.values() for urn in urns if urn]  # state.go:376-382
        if self.deleted_with:  # state.go:383-385
            found.append((DELETED_WITH, self.deleted_with))
        # state.go:386-390 (ReplaceWith): the SDK this program pins sends none, and simulate.Registration has no such field.
        return self.provider, found


def _reference(ref: str) -> tuple[str, str]:
    """providers.ParseReference (sdk/go/common/providers/reference.go:147-160): split at the last `::`."""
    urn, sep, id_ = ref.rpartition("::")
    if not sep:
        raise ValueError(f"expected '::' in provider reference {ref!r}")
    return urn, id_


def state_of(sim: Simulation) -> tuple[StateEntry, ...]:
    """The state a `pulumi up` of this simulation leaves: every registration, in the order it was registered.

    The engine keeps a snapshot in an order where each resource comes after everything it depends on
    (dependency_graph.go:58-59, "snapshots are stored in a valid topological order"); the SDK registers a
    resource only once its parent, provider, dependencies and deletedWith have their URNs, so the order the
    mock monitor received them in is such an order (`check_order` says so, or raises). A resource's ID is
    the one its provider references carry for a provider, and the mocks' otherwise.
    """
    ids: dict[str, str] = {}
    for reg in sim.registrations:
        for ref in (reg.provider, *reg.providers.values()):
            if ref:
                urn, id_ = _reference(ref)
                ids.setdefault(urn, id_)
    entries = tuple(
        StateEntry(
            urn=reg.urn,
            id=ids.get(reg.urn, f"{reg.name}-id"),
            parent=reg.parent,
            provider=reg.provider,
            dependencies=reg.dependencies,
            property_dependencies=reg.property_dependencies,
            deleted_with=reg.deleted_with,
            protect=reg.protect,
            delete_command=_delete_command(reg),
            delete_before_replace=reg.delete_before_replace,
        )
        for reg in sim.registrations
    )
    check_order(entries)
    return entries


def _delete_command(reg: Registration) -> str | None:
    """What a command's delete runs (pulumi-command's Delete does nothing without one: remote/commandController.go:86-91)."""
    if not reg.type.startswith("command:"):
        return None
    command = reg.inputs.get("delete")
    return str(command) if command else None


def check_order(entries: Sequence[StateEntry]) -> None:
    """Raise unless every resource comes after the resources it depends on (the snapshot's invariant)."""
    seen: set[str] = set()
    urns = {e.urn for e in entries}
    for entry in entries:
        provider, deps = entry.all_dependencies()
        needed = [urn for _, urn in deps] + ([_reference(provider)[0]] if provider else [])
        late = [urn for urn in needed if urn in urns and urn not in seen]
        if late:
            raise ValueError(f"{entry.urn} comes before what it depends on: {late}")
        seen.add(entry.urn)


def depending_on(entries: Sequence[StateEntry], urn: str, ignore: frozenset[str] = frozenset(), include_children: bool = False) -> list[StateEntry]:
    """DependencyGraph.DependingOn (pkg/resource/graph/dependency_graph.go:55-120): every resource after `urn` in
    the state that depends on it, or on one found so far, through a dependency, a property dependency or
    deletedWith (79-83), its provider (87-93), and with `include_children` its parent (75-78)."""
    position = next(i for i, e in enumerate(entries) if e.urn == urn)  # the cursor (63-65)
    dependents: list[StateEntry] = []
    dependent_set = {urn}  # 61, 65

    def is_dependent(candidate: StateEntry) -> bool:  # 67-96
        if candidate.urn in ignore:  # 68-70
            return False
        provider, deps = candidate.all_dependencies()
        for kind, dep in deps:
            if kind == PARENT:
                if include_children and dep in dependent_set:  # 75-78
                    return True
            elif dep in dependent_set:  # 79-83: dependency, property dependency, deleted-with (and replace-with)
                return True
        return bool(provider) and _reference(provider)[0] in dependent_set  # 87-93

    for candidate in entries[position + 1 :]:  # the linear scan, 111-117
        if is_dependent(candidate):
            dependents.append(candidate)
            dependent_set.add(candidate.urn)
    return dependents


def only_depends_on(entries: Sequence[StateEntry], resource: StateEntry) -> list[StateEntry]:
    """DependencyGraph.OnlyDependsOn (dependency_graph.go:128-200), what `pulumi state delete` asks
    (pkg/resource/edit/operations.go:83): the resources that depend on this one only, by URN and ID.

    With every URN once in the state (a simulated run's), it is DependingOn with children included;
    `tests/iluvatar/test_graph.py` checks that on both shipped stacks.
    """
    position = next(i for i, e in enumerate(entries) if e is resource)  # 135-136
    dependents: list[StateEntry] = []
    dependent: dict[str, list[str]] = {resource.urn: [resource.id]}  # 132, 137
    non_dependent: dict[str, list[str]] = {}  # 133

    def is_dependent(candidate: StateEntry) -> bool:  # 138-167
        if candidate.urn == resource.urn and candidate.id == resource.id:  # 139-141
            return False
        provider, deps = candidate.all_dependencies()
        for kind, dep in deps:
            if kind == PARENT:
                if dependent.get(dep) and not non_dependent.get(dep):  # 146-149
                    return True
            elif len(dependent.get(dep, [])) == 1 and not non_dependent.get(dep):  # 150-154
                return True
        if provider:  # 158-164
            urn, id_ = _reference(provider)
            return id_ in dependent.get(urn, [])
        return False

    for candidate in entries[:position]:  # 185-188
        non_dependent.setdefault(candidate.urn, []).append(candidate.id)
    for candidate in entries[position + 1 :]:  # 189-197
        if is_dependent(candidate):
            dependents.append(candidate)
            dependent.setdefault(candidate.urn, []).append(candidate.id)
        else:
            non_dependent.setdefault(candidate.urn, []).append(candidate.id)
    return dependents


class EngineRefusedError(Exception):
    """What the engine prints when it refuses a state edit (pkg/cmd/pulumi/state/state_delete.go:118-136) or a `--replace`."""


def delete_resource(entries: Sequence[StateEntry], condemned: StateEntry, target_dependents: bool, force: bool) -> tuple[StateEntry, ...]:
    """edit.DeleteResource (pkg/resource/edit/operations.go:46-131): the state without `condemned`, and with
    `target_dependents` without every resource OnlyDependsOn finds; refused for a protected one unless `force`."""

    def protected(entry: StateEntry) -> None:  # 53-65, with state_delete.go:78-85 (--force unprotects)
        if entry.protect and not force:
            raise EngineRefusedError(
                f"{entry.urn} can't be safely deleted because it is protected. Re-run this command with --force to force deletion"
            )

    protected(condemned)  # 67-69
    deps = only_depends_on(entries, condemned)  # 80-83
    if deps and not target_dependents:  # 84-87, the message of state_delete.go:120-129
        lines = "".join(f' * "{d.name}" ({d.urn})\n' for d in deps)
        raise EngineRefusedError(
            f"{condemned.urn} can't be safely deleted because the following resources depend on it:\n{lines}\n"
            "Delete those resources first or pass --target-dependents."
        )
    for dep in deps:  # 88-93
        protected(dep)
    gone = {id(d) for d in deps} | {id(condemned)}
    kept = tuple(e for e in entries if id(e) not in gone)  # 98-121
    if any(e.parent == condemned.urn for e in kept):  # 123-125: the engine asserts no child is left behind
        raise AssertionError(f"unexpected children of {condemned.urn} in resource dependency list")
    return kept


def state_delete(
    entries: Sequence[StateEntry], urns: Sequence[str], target_dependents: bool = False, force: bool = False
) -> tuple[tuple[StateEntry, ...], list[StateEntry]]:
    """`pulumi state delete URN...` (state_delete.go:167-196): the state after it, and what it removed.

    Each URN must be in the state (resolveStateResourceArg); they are deleted in the order
    computeStateDeleteOrder finds (198-232: a target none of the others left depends on goes first), each
    by edit.DeleteResource on the state the previous deletion left.
    """
    state = tuple(entries)
    targets: list[StateEntry] = []
    for urn in urns:
        found = [e for e in state if e.urn == urn]
        if not found:
            raise EngineRefusedError(f"No such resource {urn!r} exists in the current state")
        targets.extend(found)
    order: list[StateEntry] = []
    remaining = list(targets)
    while remaining:  # computeStateDeleteOrder, 207-230
        ready = [t for t in remaining if not any(d in remaining for d in only_depends_on(state, t))]
        if not ready:
            raise EngineRefusedError(
                "could not order deletions: selected resources have cyclic or conflicting dependencies; try deleting them one at a time"
            )
        order.append(ready[0])
        remaining.remove(ready[0])
    before = state
    for target in order:  # 187-191
        state = delete_resource(state, target, target_dependents, force)
    kept = {id(e) for e in state}
    return state, [e for e in before if id(e) not in kept]


def urn_matches(pattern: str, urn: str) -> bool:
    """Whether `--replace`/`--target` PATTERN names URN: UrnTargets (pkg/resource/deploy/deployment.go:154-231).

    A pattern with `*` is a glob: `**` matches anything, `*` anything but `:` (getMatcher, 193-213); any
    other is a URN, matched whole (222-224).
    """
    if "*" not in pattern:
        return pattern == urn
    segments = ["[^:]*".join(re.escape(part) for part in segment.split("*")) for segment in pattern.split("**")]
    return re.fullmatch(".*".join(segments), urn) is not None


@dataclass(frozen=True)
class Replacement:
    """What `pulumi up --replace PATTERN...` does beyond an ordinary `up`: the resources it replaces, and the
    delete commands it runs on the old ones (after every create, as the engine deletes replaced resources)."""

    replaced: tuple[StateEntry, ...]
    deletes: tuple[StateEntry, ...]
    # The delete commands of delete-before-replace resources: each runs before its resource's new create.
    deletes_first: tuple[StateEntry, ...] = ()


def up_replace(entries: Sequence[StateEntry], patterns: Sequence[str]) -> Replacement:
    """`pulumi up --replace` over this state, with the program unchanged.

    - A pattern that is a URN must name a resource (deploymentExecutor.checkTargets,
      pkg/resource/deploy/deployment_executor.go:67-85, run for ReplaceTargets at 190-192); a glob may name none.
    - Each resource a pattern names is replaced: its diff is a replacement (step_generator.go:2888-2891, by
      isTargetedReplace, 216-223), its inputs unchanged (2008).
    - Create before delete unless the resource asks otherwise (2044-2047): the new one is created, the
      dependents are left as they are, and the old one is deleted at the end, running its delete command.
    - Delete-before-replace (2048-2131): the old one is deleted first, running its delete command, then the new
      one created. It also replaces dependents (calculateDependentReplacements); that part is not modelled, so a
      delete-before-replace resource that anything depends on (parent, dependency, property dependency,
      deletedWith, provider) is refused here rather than guessed at. With no dependents there is nothing to
      calculate.
    """
    for pattern in patterns:
        if "*" not in pattern and not any(e.urn == pattern for e in entries):
            raise EngineRefusedError(f"one or more targets could not be found in the stack: {pattern}")
    replaced = tuple(e for e in entries if any(urn_matches(p, e.urn) for p in patterns))
    first = [e for e in replaced if e.delete_before_replace]
    refused = [e.urn for e in first if any(_names(other, e.urn) for other in entries)]
    if refused:
        raise NotImplementedError(f"delete-before-replace of a resource with dependents is not modelled: {refused}")
    return Replacement(
        replaced,
        tuple(e for e in replaced if e.delete_command and not e.delete_before_replace),
        tuple(e for e in first if e.delete_command),
    )


def _names(entry: StateEntry, urn: str) -> bool:
    """Whether ENTRY depends on URN in any way the state records (its provider reference included)."""
    provider, found = entry.all_dependencies()
    return (bool(provider) and _reference(provider)[0] == urn) or any(dep == urn for _, dep in found)
