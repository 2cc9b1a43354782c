"""What fills each Pi's netboot cache: the pinned iPXE binaries and each board's Talos kernel and
initramfs, so the netboot pod starts on any Pi without the internet."""

from __future__ import annotations

import hashlib

from plans.netboot.base import HOST_CACHE
from plans.netboot.debs import files as debs_files
from stacks import pins

# iPXE binaries, served by TFTP, from Debian's `ipxe` package at a pinned version (the first
# Debian release whose package ships an arm64 build). Name served -> (file in the package, SHA-256).
IPXE_DEBIAN_VERSION = pins.APPS["ipxe"]
# Where each Pi keeps that package's pinned file (stacks.pins.DEBS["netboot-ipxe"]), so a Pi refills its TFTP cache offline.
IPXE_DEBS = f"{HOST_CACHE}/ipxe-debs"
IPXE_FILES = {
    "undionly.kpxe": ("undionly.kpxe", "391bfe580ec9f823d046ee390765d6c389f482b9a8b9fae0f90871cd8ff57828"),
    "ipxe.efi": ("ipxe-amd64.efi", "6095eb23f4173674a3dc124a2a6d3cdeed514172793306a10d525f57b97cdc6a"),
    "ipxe-arm64.efi": ("ipxe-arm64.efi", "5369815eee98bf98b28a18af9a57207f9096a3b4e542ed3df1eb3f5b28d3d9a9"),
}


def fetch_assets_script(urls: dict[str, tuple[str, str]], root: str = f"{HOST_CACHE}/assets") -> str:
    """Fill a Pi's cache with each board's Talos kernel and initramfs; skip what is already there.

    A board's pair is downloaded into a new folder and swapped in whole, so nginx never serves a
    kernel with another version's initramfs.
    """
    lines = ["set -eu"]
    for board, (kernel, initramfs) in sorted(urls.items()):
        d = f"{root}/{board}"
        stamp = hashlib.sha256(f"{kernel}\n{initramfs}".encode()).hexdigest()[:16]
        lines += [
            f'if [ "$(cat {d}/source 2>/dev/null)" != {stamp} ]; then',
            f"  rm -rf {d}.new && mkdir -p {d}.new",
            f"  curl -fsSL --retry 5 -o {d}.new/vmlinuz '{kernel}'",
            f"  curl -fsSL --retry 5 -o {d}.new/initramfs.xz '{initramfs}'",
            f"  echo {stamp} > {d}.new/source",
            f"  rm -rf {d}.old && if [ -d {d} ]; then mv {d} {d}.old; fi && mv {d}.new {d} && rm -rf {d}.old",
            "fi",
        ]
    return "\n".join(lines) + "\n"


def fetch_ipxe_script(root: str = f"{HOST_CACHE}/tftp", debs: str = IPXE_DEBS, fetch: str = "/etc/iluvatar/ipxe-debs.sh") -> str:
    """Fill a Pi's TFTP cache with the pinned iPXE binaries, checked by SHA-256, unless present.

    They come out of Debian's pinned ipxe file (stacks.pins.DEBS["netboot-ipxe"]), kept in `debs` by the set's fetch
    script `fetch` (plans.netboot.debs: snapshot.debian.org, its SHA-256, nothing asked of the network when it is there)
    and unpacked with dpkg-deb, not installed: the binaries are data, and the first version's `apt-get update && apt-get
    install ipxe=VERSION` failed once the live archive dropped that version, and with no internet.

    Each binary is replaced by a rename inside `root`, never `root` itself (review 41-7 C1): the netboot pod's dnsmasq
    mounts `root` as a hostPath, and a bind mount holds the folder, not its name, so a folder swapped in under the
    same name is one dnsmasq never sees (it served a deleted, empty folder until its pod was recreated). The folder
    also holds the Pis' boot folders (plans.netboot.pis), which a swap would take away."""
    sums = "\n".join(f"{digest}  {name}" for name, (_, digest) in sorted(IPXE_FILES.items()))
    staged = "\n".join(f"{digest}  .{name}.new" for name, (_, digest) in sorted(IPXE_FILES.items()))
    [deb] = debs_files("netboot-ipxe")
    copies = "\n".join(f'  cp "$X/usr/lib/ipxe/{source}" {root}/.{name}.new' for name, (source, _) in sorted(IPXE_FILES.items()))
    renames = "\n".join(f"  mv -f {root}/.{name}.new {root}/{name}" for name in sorted(IPXE_FILES))
    return (
        "set -eu\n"
        # What the first version's swap of the whole folder could leave behind (review 41-9 L2).
        f"rm -rf {root}.new {root}.old\n"
        # The container's /tmp; TMPDIR where the script runs beside others (the tests).
        'SUMS="${TMPDIR:-/tmp}/ipxe.sha256"\n'
        'X="${TMPDIR:-/tmp}/ipxe-deb"\n'
        f"cat > \"$SUMS\" <<'EOF'\n{sums}\nEOF\n"
        f"cat > \"$SUMS.new\" <<'EOF'\n{staged}\nEOF\n"
        f'if ! (cd {root} 2>/dev/null && sha256sum -c --status "$SUMS"); then\n'
        f"  DIR={debs} sh {fetch}\n"
        f'  rm -rf "$X" && dpkg-deb -x {debs}/{deb} "$X"\n'
        f"  mkdir -p {root} && rm -f {root}/.*.new\n"
        f"{copies}\n"
        f'  rm -rf "$X"\n'
        f'  (cd {root} && sha256sum -c "$SUMS.new")\n'
        # On disk before they take the served names: a power cut right after leaves whole files or the old ones.
        "  sync\n"
        f"{renames}\n"
        "fi\n"
    )
