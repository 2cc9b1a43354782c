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

from collections.abc import Iterable, Iterator
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
