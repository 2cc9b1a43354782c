"""The homelab stack run once per test module under the mock runtime."""

from __future__ import annotations

import pytest

from iluvatar.simulate import Simulation
from tests.edit import HOMELAB
from tests.sims import simulated


@pytest.fixture(scope="module")
def homelab() -> Simulation:
    return simulated(HOMELAB)
