"""A Raspberry Pi's revision code (the `Revision` line of /proc/cpuinfo, just above `Serial`) read as the board it names.

A value written as a Pi's serial that reads as a new-style revision code of the board written was most likely copied
from the wrong line. The layout (Raspberry Pi documentation, computers/raspberry-pi/revision-codes.adoc, "New-style
revision codes"): NOQuuuWuFMMMCCCCPPPPTTTTTTTTRRRR, bit 23 (F) set, type T, processor P, manufacturer C, memory M,
revision R; N, O, Q and W are flags (overvoltage, OTP program and read, warranty) that a board as sold leaves clear.
/proc/cpuinfo prints it in hex without leading zeros (`Revision : d04170`).

Odds that a real serial reads as one by chance: a serial's low 8 hex digits are the board's OTP number, with no relation
to this layout; taken as 32 random bits, the top byte must be 0 (1/256), F set (1/2), the type one of the board's four
(4/256), the processor the board's (1/16), the manufacturer a known one (6/16), the memory one the board is sold with
(4/8 or 5/8): about 1 in 2.2 million for a Pi 5 (1 in 2.8 million for a Pi 4), which is why a match is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Type codes by the stack's board (stacks.boards), each with its processor (BCM2711 is 3, BCM2712 is 4) and the
# memory codes the models are sold with (2 = 1GB to 6 = 16GB).
_TYPES: dict[str, tuple[int, dict[int, str], frozenset[int]]] = {
    "rpi4": (
        3,
        {0x11: "Raspberry Pi 4 Model B", 0x13: "Raspberry Pi 400", 0x14: "Compute Module 4", 0x15: "Compute Module 4S"},
        frozenset({2, 3, 4, 5}),
    ),
    "rpi5": (
        4,
        {0x17: "Raspberry Pi 5", 0x18: "Compute Module 5", 0x19: "Raspberry Pi 500", 0x1A: "Compute Module 5 Lite"},
        frozenset({2, 3, 4, 5, 6}),
    ),
}
_MEMORY = {2: "1GB", 3: "2GB", 4: "4GB", 5: "8GB", 6: "16GB"}
_MAKERS = {0: "Sony UK", 1: "Egoman", 2: "Embest", 3: "Sony Japan", 4: "Embest", 5: "Stadium"}
_HEX = re.compile(r"^[0-9a-fA-F]{1,8}$")


@dataclass(frozen=True)
class Revision:
    """A revision code as the board it names: `code` as /proc/cpuinfo prints it, `model` and `memory` as sold."""

    code: str
    model: str
    memory: str
    maker: str

    def said(self) -> str:
        """What a value that reads as this code is, for a message: the line of /proc/cpuinfo it came from."""
        return (
            f"the Revision line of /proc/cpuinfo (Revision : {self.code}, the new-style revision code of a {self.model} "
            f"{self.memory} made by {self.maker}), the line above Serial"
        )


def pi_revision(value: str, board: str | None = None) -> Revision | None:
    """The board `value` names when read as a new-style revision code of `board` (any Pi board when None), or None."""
    if not _HEX.match(value):
        return None
    code = int(value, 16)
    if code >> 24 or not code & (1 << 23):
        return None
    kind, processor, maker, memory = (code >> 4) & 0xFF, (code >> 12) & 0xF, (code >> 16) & 0xF, (code >> 20) & 0x7
    for name, (its_processor, models, memories) in _TYPES.items():
        if board in (None, name) and kind in models and processor == its_processor and memory in memories and maker in _MAKERS:
            return Revision(f"{code:x}", models[kind], _MEMORY[memory], _MAKERS[maker])
    return None
