"""The engine's state rules in iluvatar.graph, on the shipped stacks' states and on small hand-made ones."""

from __future__ import annotations

import pytest

from iluvatar.graph import (
    EngineRefusedError,
    StateEntry,
    check_order,
    depending_on,
    only_depends_on,
    state_delete,
    state_of,
    up_replace,
    urn_matches,
)
from tests.edit import HOMELAB, RK1
from tests.sims import simulated

P = "urn:pulumi:s::p::"


def entry(name: str, parent: str = "", provider: str = "", deps: tuple[str, ...] = (), props: tuple[str, ...] = (), **kw: object) -> StateEntry:
    return StateEntry(
        urn=f"{P}t:m:T::{name}",
        id=f"{name}-id",
        parent=parent,
        provider=provider,
        dependencies=deps,
        property_dependencies={"x": props} if props else {},
        deleted_with=str(kw.get("deleted_with", "")),
        protect=bool(kw.get("protect", False)),
        delete_command=kw.get("delete_command"),  # type: ignore[arg-type]
        delete_before_replace=kw.get("delete_before_replace"),  # type: ignore[arg-type]
    )


def u(name: str) -> str:
    return f"{P}t:m:T::{name}"


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=["homelab", "rk1"])
def test_with_every_urn_once_only_depends_on_is_depending_on_with_children(path: object) -> None:
    """What `state delete` asks (OnlyDependsOn) and DependingOn with children agree on a state where every URN is
    once, as a simulated run's is; and the state is in the order the engine keeps (each after what it depends on)."""
    state = state_of(simulated(path))  # type: ignore[arg-type]
    assert len({e.urn for e in state}) == len(state) > 80
    for e in state:
        assert [d.urn for d in only_depends_on(state, e)] == [d.urn for d in depending_on(state, e.urn, include_children=True)], e.name


def test_each_kind_of_dependency_counts_and_a_parent_only_with_children() -> None:
    prov = entry("prov")
    ref = f"{prov.urn}::{prov.id}"
    state = (
        prov,
        a := entry("a"),
        entry("by-dep", deps=(a.urn,)),
        entry("by-prop", props=(a.urn,)),
        entry("by-deleted-with", deleted_with=a.urn),
        entry("child", parent=a.urn),
        entry("by-provider", provider=ref),
        entry("grandchild", parent=u("child")),
        entry("after-dep", deps=(u("by-dep"),)),
        entry("unrelated"),
    )
    check_order(state)
    assert [d.name for d in depending_on(state, a.urn)] == ["by-dep", "by-prop", "by-deleted-with", "after-dep"]
    assert [d.name for d in depending_on(state, a.urn, include_children=True)] == [
        "by-dep", "by-prop", "by-deleted-with", "child", "grandchild", "after-dep"
    ]  # fmt: skip
    assert [d.name for d in depending_on(state, prov.urn)] == ["by-provider"]
    # A provider reference names an ID too: another ID of the provider is no dependent of this one (OnlyDependsOn).
    other = entry("by-old-provider", provider=f"{prov.urn}::an-older-id")
    assert [d.name for d in only_depends_on((*state, other), prov)] == ["by-provider"]
    with pytest.raises(ValueError, match="comes before what it depends on"):
        check_order((entry("early", deps=(a.urn,)), a))


def test_state_delete_refuses_dependents_and_protected_unless_told() -> None:
    state = (a := entry("a"), entry("b", deps=(a.urn,)), entry("locked", deps=(u("b"),), protect=True), entry("c"))
    with pytest.raises(EngineRefusedError) as refused:
        state_delete(state, [a.urn])
    assert str(refused.value) == (
        f"{a.urn} can't be safely deleted because the following resources depend on it:\n"
        f' * "b" ({u("b")})\n * "locked" ({u("locked")})\n\nDelete those resources first or pass --target-dependents.'
    )
    with pytest.raises(EngineRefusedError, match=r"because it is protected\. Re-run this command with --force"):
        state_delete(state, [a.urn], target_dependents=True)
    after, removed = state_delete(state, [a.urn], target_dependents=True, force=True)
    assert [e.name for e in removed] == ["a", "b", "locked"] and [e.name for e in after] == ["c"]
    # Several targets: the dependent first, then what it depended on (computeStateDeleteOrder).
    after, removed = state_delete(state[:2], [a.urn, u("b")])
    assert after == () and [e.name for e in removed] == ["a", "b"]
    with pytest.raises(EngineRefusedError, match="No such resource"):
        state_delete(state, [u("nothing")])


def test_replace_patterns_as_the_engine_matches_them() -> None:
    urn = "urn:pulumi:homelab::iluvatar::iluvatar:ainur:BootstrapCluster$iluvatar:ainur:Pi$command:remote:Command::ainur-eonwe-join"
    assert urn_matches("**::ainur-eonwe-join", urn)
    assert not urn_matches("**::ainur-eonwe", urn)
    assert not urn_matches("*::ainur-eonwe-join", urn)  # one `*` stops at a `:`
    assert not urn_matches("urn:pulumi:homelab::iluvatar::*::ainur-*-join", urn)  # the type has `:` in it
    assert urn_matches("urn:pulumi:homelab::iluvatar::**::ainur-*-join", urn)
    assert urn_matches(urn, urn) and not urn_matches(urn[:-1], urn)
    state = (entry("join", delete_command="uninstall"), entry("k3s", deps=(u("join"),)))
    done = up_replace(state, ["**::join"])
    assert [e.name for e in done.replaced] == ["join"] and [e.name for e in done.deletes] == ["join"]
    assert up_replace(state, ["**::nothing"]).replaced == ()  # a glob may name nothing
    with pytest.raises(EngineRefusedError, match="could not be found"):
        up_replace(state, [u("nothing")])  # a URN must name something


def test_a_delete_before_replace_runs_its_delete_first_and_only_without_dependents() -> None:
    """Delete-before-replace (step_generator.go:2048-2131): the old delete runs before the new create, so it is not
    in the deletes that run at the end; with a dependent (whose replacement the engine calculates) it is refused."""
    state = (entry("join"), entry("journal", deps=(u("join"),), delete_command="off", delete_before_replace=True))
    done = up_replace(state, ["**::join", "**::journal"])
    assert [e.name for e in done.replaced] == ["join", "journal"]
    assert done.deletes == () and [e.name for e in done.deletes_first] == ["journal"]
    with pytest.raises(NotImplementedError, match="with dependents"):
        up_replace((*state, entry("after", deps=(u("journal"),))), ["**::journal"])
    with pytest.raises(NotImplementedError, match="with dependents"):
        up_replace((*state, entry("child", parent=u("journal"))), ["**::journal"])
