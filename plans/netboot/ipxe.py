"""The iPXE scripts: `boot.ipxe`, which chains a known machine to its own script, and one script
per netboot machine that boots the Talos kernel for its board.

Workers get `talos.config=` pointing at their own config; control planes get none and wait in
maintenance mode for Pulumi's `ConfigurationApply`, so the cluster's CA keys never cross the LAN.
"""

from __future__ import annotations

from plans import talos
from plans.netboot import cmdline
from plans.netboot.base import (
    DISCOVERY_HOSTNAME,
    DISCOVERY_WINDOW_FILE,
    GENERIC_WORKER,
    base_url,
    config_nodes,
    discovery_script,
    mac_name,
    netboot_nodes,
    service_ip,
)
from stacks.model import StackConfig

# Talos' kernel arguments for bare metal (Talos PXE guide).
TALOS_KERNEL_ARGS = (
    "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 "
    "nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng ima_appraise=fix ima_hash=sha512"
)


# Hands an unknown machine back to its firmware with an error, so that the firmware boots its next device (its disk).
# A bare `exit` is status 0 (iPXE dad20602 core/exec.c:453-471), which iPXE's EFI entry returns as EFI_SUCCESS
# (interface/efi/efiprefix.c:62-74); UEFI 2.x section 3.1.1 and EDK2's BdsDxe (MdeModulePkg/Universal/BdsDxe/BdsEntry.c,
# BootBootOptions: a Boot#### returning EFI_SUCCESS stops BootOrder and shows the boot manager menu) then strand the
# machine at its firmware's front page. `exit 1` is EFIRC(1), an error (include/ipxe/errno/efi.h:48-50): BdsDxe goes on
# to the next Boot####. A BIOS NIC ROM goes on to the BIOS's next device (int 18) whatever the status.
NEXT_BOOT_DEVICE = "exit 1"


def boot_script(stack: StackConfig) -> str:
    """boot.ipxe: a known machine chains to its own script; an unknown one is told so (or booted
    to be discovered, or as the generic worker). Each failure names the step and the URL that failed."""
    assert stack.ainur is not None
    generic = stack.generic_worker is not None
    base = base_url(stack)
    lines = [
        "#!ipxe",
        f"# Iluvatar: served at {base}/boot.ipxe; each machine of the inventory has its own script, keyed by MAC.",
        f"set iluvatar {base}",
    ]
    for node in sorted(netboot_nodes(stack), key=lambda n: n.mac):
        lines.append(f"iseq ${{mac:hexhyp}} {mac_name(node.mac)} && goto known ||")
    lines += ["goto unknown", ":known", "set script ${iluvatar}/ipxe/${mac:hexhyp}.ipxe", "chain ${script} || goto failed", "exit", ":unknown"]
    if stack.discovery is not None:
        lines += _discovery_lines(stack)
    elif generic:
        lines += [
            "echo Iluvatar: ${mac} is not in the inventory; booting it as a generic worker (netboot.unknownMacs)",
            f"set script ${{iluvatar}}/ipxe/{GENERIC_WORKER}.ipxe",
            "chain ${script} || goto failed",
            "exit",
        ]
    else:
        lines += [
            "echo Iluvatar: ${mac} is not in the inventory, so it is not netbooted (add it to iluvatar:nodes)",
            NEXT_BOOT_DEVICE,
        ]
    lines += [
        ":failed",
        "echo Iluvatar: ${script} failed with error ${errno} (https://ipxe.org/err); the lines above say which step",
        "sleep 10",
        "exit 1",
    ]
    return "\n".join(lines) + "\n"


def _discovery_lines(stack: StackConfig) -> list[str]:
    """An unknown machine is booted to be discovered only while the window is open (`iluvatar discover --arm`: the
    netboot pod serves /discovery/window.ipxe until then, plans.netboot.window), and only as an architecture the stack
    boots (arda.discovery.arches). Otherwise `exit 1` (NEXT_BOOT_DEVICE): iPXE hands the machine back to its firmware
    with an error, so the firmware boots its next device (its disk), as it did when the Ainur gave it no boot file."""
    arches = list(stack.discovery_boards)
    lines = [
        f"imgfetch --name window ${{iluvatar}}/{DISCOVERY_WINDOW_FILE} || goto closed",
        "imgfree window",
        # Its iPXE says which architecture it runs (`${buildarch}`: i386 or x86_64 on a PC, arm64 on an arm64 server).
        "iseq ${buildarch} arm64 && set arch arm64 || set arch amd64",
        *(f"iseq ${{arch}} {arch} && goto discover ||" for arch in arches),
        f"echo Iluvatar: ${{mac}} is not in the inventory, and discovery boots {' and '.join(arches)} only (arda.discovery.arches): "
        "on to its next boot device",
        NEXT_BOOT_DEVICE,
        ":discover",
        "echo Iluvatar: ${mac} is not in the inventory; booting Talos in maintenance mode to be discovered (arda.discovery)",
        "set script ${iluvatar}/ipxe/discovery-${arch}.ipxe",
        "chain ${script} || goto failed",
        "exit",
        ":closed",
        "echo Iluvatar: ${mac} is not in the inventory, and discovery is not armed (iluvatar discover --arm): on to its next boot device",
        NEXT_BOOT_DEVICE,
    ]
    return lines


def asset_dir(board: str) -> str:
    return f"/assets/{board}"


def kernel_line(stack: StackConfig, board: str, config_name: str | None, extra: str = "") -> str:
    """The iPXE `kernel` line. `initrd=` names the initramfs for UEFI's EFI stub, which boots
    without it; `talos.config=` only for machines that are served a config; `extra`, Iluvatar's own last."""
    base = base_url(stack)
    # The board's own (arda.kernelArgs): Image Factory's bare kernel carries none of its schematic's
    # (image-factory v1.0.3 internal/profile/profile.go:457), and the installed system has them from its installer,
    # merged into the defaults by Talos's imager: merged here the same way (plans.netboot.cmdline), so `console=`
    # replaces the default console and `-key` removes a default, whichever way the machine boots.
    args = cmdline.merge(TALOS_KERNEL_ARGS, talos.kernel_args(stack, board))
    line = f"kernel {base}{asset_dir(board)}/vmlinuz initrd=initramfs.xz {args}"
    if config_name is not None:
        line += f" talos.config={base}/configs/{config_name}.yaml"
    if extra:
        line += f" {extra}"
    return line


def node_script(stack: StackConfig, board: str, config_name: str | None, comment: str, mode: str = "", extra: str = "") -> str:
    """One machine's iPXE script: the Talos kernel for its board, with its config URL if it gets one."""
    base = base_url(stack)
    assets = f"{base}{asset_dir(board)}"
    mode = mode or ("its machine config at talos.config" if config_name else "maintenance mode; Pulumi applies its config")
    return (
        "#!ipxe\n"
        f"# {comment}: Talos {stack.arda.talos_version}, {mode}\n"
        f"{kernel_line(stack, board, config_name, extra)} || goto kernel\n"
        f"initrd --name initramfs.xz {assets}/initramfs.xz || goto initrd\n"
        "boot || goto boot\n"
        ":kernel\n"
        f"echo Iluvatar: could not load the Talos kernel {assets}/vmlinuz (error ${{errno}}); is the netboot cache on the Pi holding {service_ip(stack)} filled?\n"
        "goto fail\n"
        ":initrd\n"
        f"echo Iluvatar: could not download the Talos initramfs {assets}/initramfs.xz (error ${{errno}})\n"
        "goto fail\n"
        ":boot\n"
        f"echo Iluvatar: the Talos kernel for {board} did not start (error ${{errno}}); a truncated download or the wrong architecture?\n"
        ":fail\n"
        "sleep 10\n"
        "exit 1\n"
    )


def scripts(stack: StackConfig) -> dict[str, str]:
    """Every iPXE script by file name: boot.ipxe and one per netboot machine (and the generic worker)."""
    assert stack.ainur is not None
    served = {n.name for n in config_nodes(stack)}
    out = {"boot.ipxe": boot_script(stack)}
    for node in netboot_nodes(stack):
        name = mac_name(node.mac)
        out[f"{name}.ipxe"] = node_script(stack, node.board, name if node.name in served else None, f"{node.name} ({node.role})")
    if stack.discovery is not None:
        # No talos.config: Talos boots into maintenance mode, installs nothing and is given no secret. Its name on
        # the LAN is `discovery-<arch>-<mac>` (talos.hostname: internal/app/machined/pkg/controllers/network/cmdline.go:87-90
        # at v1.12.4), which Talos sends DHCP (option 12, operator/dhcp4.go:503-537) and dnsmasq keys the discovery pool
        # on; `iluvatar discover` reads the architecture there (a Talos 1.12 maintenance API answers no Version to anyone).
        for arch, board in stack.discovery_boards.items():
            out[discovery_script(arch)] = node_script(
                stack,
                board,
                None,
                f"an unknown {arch} machine, to be discovered (arda.discovery)",
                mode="maintenance mode, no config: `iluvatar discover` reads what it is",
                extra=f"talos.hostname={DISCOVERY_HOSTNAME}{arch}-${{mac:hexhyp}}",
            )
    gw = stack.generic_worker
    if gw is not None:
        out[f"{GENERIC_WORKER}.ipxe"] = node_script(stack, gw.board, GENERIC_WORKER, "an unknown machine, as a generic worker")
    return dict(sorted(out.items()))
