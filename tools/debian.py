"""Debian packages from a newer release than the machine's, for checks that need them.

Debian 12's `cloud-init` (22.4) cannot check a network-config, and its `ipxe` has no arm64 build.
Debian 13 ("trixie") has both. These pinned packages are downloaded with apt from the same Debian
archive the machine already uses (its own apt sources name it), checked against pinned SHA-256
sums, and unpacked into a cache outside the repository; nothing is installed on the system.

    python -m tools.debian fetch        # download and unpack every package (CI runs this)
    python -m tools.debian path NAME    # print where NAME is unpacked

The cache is `$ILUVATAR_CACHE/debian` (default `~/.cache/iluvatar/debian`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from stacks import pins

SUITE = "trixie"
# name -> (version, SHA-256 of the .deb). The iPXE binaries served to machines come from the same
# version (plans.netboot.IPXE_DEBIAN_VERSION), so what the tests boot is what the Pis serve.
PACKAGES: dict[str, tuple[str, str]] = {
    "cloud-init": ("25.1.4-1+deb13u1", "1b120a44110e7234c9cf9ccde78fb5d5ea1292c94ef0ca70d09a580f72980df3"),
    "ipxe": (pins.APPS["ipxe"], "eeaca79dbde0fb86c102bf1d362c6f6a67ed0ddab38b3dd12e1b332339f5dd99"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("ILUVATAR_CACHE", Path.home() / ".cache" / "iluvatar")) / "debian"


def path(name: str) -> Path:
    """Where package `name` is unpacked (its files under usr/...); raises if it was never fetched."""
    version, _ = PACKAGES[name]
    target = cache_dir() / f"{name}_{version}"
    if not (target / ".complete").exists():
        raise FileNotFoundError(f"Debian {SUITE}'s {name} {version} is not in {cache_dir()}; run `python -m tools.debian fetch` (.ci/run does)")
    return target


def deb(name: str) -> Path:
    """The .deb file `name` was unpacked from, kept beside it: the netboot's tests serve it as snapshot.debian.org would
    (stacks.pins.DEBS["netboot-ipxe"] is this very file)."""
    found = path(name) / ".deb"
    if not found.is_file():
        raise FileNotFoundError(f"{found} is missing; run `python -m tools.debian fetch` (.ci/run does)")
    return found


def archive_uri() -> str:
    """The Debian archive this machine's apt uses (from its own sources), so no host is assumed."""
    texts = [p.read_text() for p in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))] if p.is_file()]
    for text in texts:
        # deb822 stanzas: URIs: ... with Suites: bookworm ...; one-line: deb URI bookworm main
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and re.search(r"\b(bookworm|trixie)\b", suites.group(1)) and "security" not in uris.group(1):
                return uris.group(1)
        for line in text.splitlines():
            m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(bookworm|trixie)\s", line)
            if m and "security" not in m.group(1):
                return m.group(1)
    raise RuntimeError("no Debian archive in this machine's apt sources (/etc/apt/sources.list*); tools.debian needs one")


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed; tools.debian needs Debian's apt and dpkg")
    return found


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def fetch() -> dict[str, Path]:
    """Download, check and unpack every pinned package (a no-op for those already unpacked)."""
    root = cache_dir()
    with _locked(root):
        # A cache from before the .deb was kept (tools.debian.deb) is fetched again.
        missing = [
            n for n, (v, _) in PACKAGES.items() if not (root / f"{n}_{v}" / ".complete").exists() or not (root / f"{n}_{v}" / ".deb").is_file()
        ]
        if missing:
            apt = root / "apt"
            (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
            (apt / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
            (apt / "sources.list").write_text(f"deb {archive_uri()} {SUITE} main\n")
            options = [
                f"-oDir::Etc::SourceList={apt / 'sources.list'}",
                "-oDir::Etc::SourceParts=-",
                f"-oDir::State::Lists={apt / 'lists'}",
                f"-oDir::Cache={apt / 'cache'}",
                "-oAPT::Sandbox::User=root",
            ]
            apt_get, dpkg_deb = _tool("apt-get"), _tool("dpkg-deb")
            subprocess.run([apt_get, *options, "-qq", "update"], check=True)  # noqa: S603
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                specs = [f"{n}={PACKAGES[n][0]}" for n in missing]
                subprocess.run([apt_get, *options, "-qq", "download", *specs], check=True, cwd=tmp)  # noqa: S603
                for name in missing:
                    version, digest = PACKAGES[name]
                    [package] = Path(tmp).glob(f"{name}_*.deb")
                    if _sha256(package) != digest:
                        raise RuntimeError(f"{package.name}: SHA-256 {_sha256(package)} is not the pinned {digest}")
                    target = root / f"{name}_{version}"
                    shutil.rmtree(target, ignore_errors=True)
                    subprocess.run([dpkg_deb, "-x", str(package), str(target)], check=True)  # noqa: S603
                    shutil.copyfile(package, target / ".deb")
                    (target / ".complete").write_text(digest + "\n")
    return {n: path(n) for n in PACKAGES}


def main(argv: list[str]) -> int:
    if argv[:1] == ["fetch"]:
        for name, where in fetch().items():
            print(f"{name} {PACKAGES[name][0]}: {where}")
        return 0
    if len(argv) == 2 and argv[0] == "path":
        print(path(argv[1]))
        return 0
    print("usage: python -m tools.debian fetch | path NAME", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
