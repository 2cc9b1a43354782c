"""stacks.pi_revision: a value read as a Raspberry Pi's new-style revision code, by the board written."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks import load_stack_file
from stacks.pi_revision import Revision, pi_revision
from tests.edit import edit, homelab_doc, write_stack


@pytest.mark.parametrize(
    ("value", "board", "revision"),
    [
        ("00d04170", "rpi5", Revision("d04170", "Raspberry Pi 5", "8GB", "Sony UK")),
        ("d04170", None, Revision("d04170", "Raspberry Pi 5", "8GB", "Sony UK")),
        ("00e04171", "rpi5", Revision("e04171", "Raspberry Pi 5", "16GB", "Sony UK")),
        ("00c03115", "rpi4", Revision("c03115", "Raspberry Pi 4 Model B", "4GB", "Sony UK")),
        ("00c03130", "rpi4", Revision("c03130", "Raspberry Pi 400", "4GB", "Sony UK")),
        ("00b03140", "rpi4", Revision("b03140", "Compute Module 4", "2GB", "Sony UK")),
        ("00d04180", "rpi5", Revision("d04180", "Compute Module 5", "8GB", "Sony UK")),
    ],
)
def test_a_revision_code_of_the_board_reads_as_it(value: str, board: str | None, revision: Revision) -> None:
    assert pi_revision(value, board) == revision


@pytest.mark.parametrize(
    ("value", "board"),
    [
        ("00c03115", "rpi5"),  # a Pi 4's code on a Pi 5
        ("00d04170", "rpi4"),
        ("01d04170", "rpi5"),  # a top byte: no code as sold has one
        ("00504170", "rpi5"),  # bit 23 clear: an old-style code's layout
        ("00d03170", "rpi5"),  # a Pi 5's type with the BCM2711
        ("00d94170", "rpi5"),  # manufacturer 9: none
        ("00f04170", "rpi5"),  # memory 7: none
        ("9ffefdef", "rpi5"),  # a serial
        ("00d04170", "generic-arm64"),
    ],
)
def test_other_values_do_not(value: str, board: str) -> None:
    assert pi_revision(value, board) is None


def test_a_pi_4s_revision_code_on_a_pi_5_validates(tmp_path: Path) -> None:
    # The rule reads the code of the board written: a Pi 5 whose serial happens to read as a Pi 4's is left alone.
    doc = edit(homelab_doc(), {"iluvatar:nodes[1].boot": "netboot", "iluvatar:nodes[1].serial": "00c03115"})
    load_stack_file(write_stack(tmp_path, doc), require_secrets=True)
