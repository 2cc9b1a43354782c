"""tests/sims.py: a shared run is made once per process, and each caller still gets a copy of its own."""

from __future__ import annotations

from iluvatar.simulate import Registration, SecretValue, Simulation
from tests.edit import HOMELAB, RK1
from tests.sims import homelab_next, simulated


def test_each_caller_gets_a_copy_of_its_own_equal_to_the_others() -> None:
    first, second = simulated(RK1), simulated(RK1)
    assert isinstance(first, Simulation)
    assert first is not second
    assert repr(first) == repr(second)
    assert all(type(r) is Registration for r in first.registrations)
    assert first.registrations[0] is not second.registrations[0]
    # What one caller changes, the next does not see.
    first.registrations[1].inputs["changed by a test"] = True
    first.outputs.clear()
    first.registrations.pop()
    third = simulated(RK1)
    assert repr(third) == repr(second)


def test_the_copies_keep_secrets_and_the_day_2_runs_are_copies_too() -> None:
    # The homelab's run exports secrets (the Talos client certificate's key, Arda's kubeconfig): still SecretValues.
    homelab = simulated(HOMELAB)
    assert [k for k, v in homelab.outputs.items() if isinstance(v, SecretValue)] != []
    nxt = homelab_next()
    nxt.outputs.clear()
    assert homelab_next().outputs != {}
