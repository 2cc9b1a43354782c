"""Boards: the kinds of machine Iluvatar knows how to install, and what each can run.

A board fixes the CPU architecture and decides which cluster a machine can join: the
Ainur run Ubuntu with cloud-init and k3s, Arda runs Talos Linux. Talos boots a single-board
computer through an Image Factory overlay, and some boards only have one from a given Talos
release on (the Raspberry Pi 5's `rpi_5` overlay arrived in v1.12.3, machinery's platforms.SBCs).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Arch = Literal["amd64", "arm64"]
# PXE firmware a board can chainload iPXE from (DHCP option 93 client architectures).
Firmware = Literal["bios", "uefi-x86_64", "uefi-arm64"]
Role = Literal["valar", "maiar", "valinor", "istari"]

AINUR_ROLES: frozenset[str] = frozenset({"valar", "maiar"})
ARDA_ROLES: frozenset[str] = frozenset({"valinor", "istari"})


@dataclass(frozen=True)
class TalosOverlay:
    """A Talos Image Factory board overlay (firmware, device tree, bootloader) for an SBC."""

    image: str
    name: str


@dataclass(frozen=True)
class Board:
    """A kind of machine: its architecture and which layers can run on it."""

    name: str
    arch: Arch
    description: str
    runs_ainur: bool
    # The first Talos release with an image for this board; older ones cannot install it.
    talos_since: str = "v1.0.0"
    talos_overlay: TalosOverlay | None = None
    netboot: tuple[Firmware, ...] = ()
    # Whether every machine of this board has a TPM 2.0 that Talos can seal a disk key to (`tpm` keys, plans.talos).
    # Talos seals to PCR 7 under a policy signed with the key its Secure Boot UKI carries (Talos v1.13.9
    # internal/pkg/secureboot/tpm2/seal.go:31-35 reads constants.PCRPublicKey, the systemd-stub's
    # tpm2-pcr-public-key.pem, which only a signed UKI has: pkg/imager/imager.go:460-481), so the fact is
    # "TPM 2.0 and UEFI Secure Boot on every machine of the board". `tpm_source` says where the fact comes from.
    tpm: bool = False
    tpm_source: str = ""
    # Whether a machine of this board can sit in a Turing Pi 2's node slot, which a BMC powers (stacks.power). The
    # slots are 260-pin SO-DIMM sockets for compute modules: Turing's RK1, a Raspberry Pi CM4 on Turing's adapter,
    # NVIDIA Jetson modules (docs.turingpi.com, "Specs and I/O Ports": "Nodes slots 4x DDR4 - 260-pin", and its
    # port table by module). No x86-64 PC is such a module; a Pi board may be its Compute Module, and an arm64 UEFI
    # machine a Jetson (whose firmware is UEFI).
    turing_pi_slot: bool = True


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board(
            "rpi4",
            "arm64",
            "Raspberry Pi 4",
            tpm_source="the Raspberry Pi 4 Model B product brief lists no TPM, and its bootloader has no UEFI Secure Boot",
            runs_ainur=True,
            talos_overlay=TalosOverlay("siderolabs/sbc-raspberrypi", "rpi_generic"),
        ),
        Board(
            "rpi5",
            "arm64",
            "Raspberry Pi 5",
            tpm_source="the Raspberry Pi 5 product brief lists no TPM; its secure boot is the bootloader's own signed boot, not UEFI Secure Boot",
            runs_ainur=True,
            talos_since="v1.12.3",
            talos_overlay=TalosOverlay("siderolabs/sbc-raspberrypi", "rpi_5"),
        ),
        Board(
            "rk1",
            "arm64",
            "Turing RK1 compute module",
            tpm_source="the Turing RK1 specification (RK3588 SoC) lists no TPM, and its U-Boot has no UEFI Secure Boot",
            runs_ainur=False,
            talos_overlay=TalosOverlay("siderolabs/sbc-rockchip", "turingrk1"),
        ),
        Board(
            "generic-x86",
            "amd64",
            "x86-64 PC (UEFI or BIOS)",
            runs_ainur=True,
            netboot=("bios", "uefi-x86_64"),
            turing_pi_slot=False,
            # Any PC: a BIOS one has no Secure Boot, and many have no TPM 2.0 or have it off in the firmware.
            tpm_source="any x86-64 PC: BIOS ones have no Secure Boot, and a TPM 2.0 is not on (or not in) every one",
        ),
        Board(
            "generic-arm64",
            "arm64",
            "arm64 UEFI server",
            runs_ainur=True,
            netboot=("uefi-arm64",),
            tpm_source="any arm64 UEFI server: a TPM 2.0 is optional in Arm's SystemReady SR/ES requirements",
        ),
    )
}


# The board a discovered machine boots as, by the architecture its iPXE reports (`${buildarch}`: i386 and x86_64 on
# a PC, arm64 on an arm64 server): the generic boards, whose Talos kernels every PC and UEFI server runs.
DISCOVERY_BOARDS: dict[Arch, str] = {"amd64": "generic-x86", "arm64": "generic-arm64"}


def discovery_boards(arches: Iterable[Arch] | None, arda_arches: Iterable[Arch]) -> dict[Arch, str]:
    """The boards discovery boots, by architecture: arda.discovery.arches, else those of the inventory's Arda machines,
    else amd64. Each one is a Talos kernel and initramfs every Pi caches, so an all-x86 homelab caches no arm64 one."""
    chosen = set(arches) if arches is not None else set(arda_arches) or {"amd64"}
    return {arch: board for arch, board in DISCOVERY_BOARDS.items() if arch in chosen}


def version_tuple(version: str) -> tuple[int, ...]:
    """`v1.12.3` as (1, 12, 3), for comparing release versions."""
    return tuple(int(x) for x in version.removeprefix("v").split("."))
