"""The homelab stack run once per test module under the mock runtime."""

from __future__ import annotations

import pytest

from iluvatar.simulate import Simulation, simulate
from stacks import read_stack_file
from tests.edit import HOMELAB


@pytest.fixture(scope="module")
def homelab() -> Simulation:
    return simulate(read_stack_file(HOMELAB))
