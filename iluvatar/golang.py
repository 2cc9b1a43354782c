"""Go programs built on first need: pinned modules, a pinned Go, a cache outside the repository.

Iluvatar ships two kinds of Go program, both built by this module from a folder holding its own
`go.mod` and `go.sum`:
- the upgrader (`upgrader/`), which `pulumi up` itself runs for every Talos step the provider cannot
  do safely (idempotent bootstrap, health gates, rolling upgrades and reboots): product code, so a
  user's `pulumi up` needs nothing more installed than the README's first command;
- the checkers the tests use (`tools/`, registered in `tools.gotools`).

Everything is fetched through the Go module proxy and verified against the committed `go.sum` (and
the checksum database the proxy serves), and built into `$ILUVATAR_CACHE` (default
`~/.cache/iluvatar`), keyed by the folder's files and the Go version, so a second build is
instant. Go itself must be 1.21 or newer, which fetches the exact toolchain a `go.mod` asks for
through the same proxy; with no usable Go on the machine, a pinned Go release is fetched from the
proxy and checked against its `h1:` sum.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import os
import platform
import re
import shutil
import subprocess
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROXY = "https://proxy.golang.org"

# The Go release fetched when the machine has none new enough (toolchain switching needs 1.21).
# h1: sums are the checksum database's (https://proxy.golang.org/sumdb/sum.golang.org/lookup/...).
BOOTSTRAP_GO = "1.26.8"
BOOTSTRAP_SUMS = {
    "amd64": "h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM=",
}
MIN_GO = (1, 21)


class GoBuildError(Exception):
    """A Go program could not be built: no Go, no proxy, or a compile error (the message says which)."""


@dataclass(frozen=True)
class Program:
    """A Go program built from `folder` (its own go.mod): `package` is a path in that module or a dependency."""

    name: str
    folder: Path
    package: str = "."
    modfile: str = "go.mod"
    tags: tuple[str, ...] = ()  # build tags: what of an upstream program a use leaves out
    ldflags: tuple[str, ...] = ()  # more linker flags, after LDFLAGS (e.g. `-X` the version a release build stamps)


# Built without DWARF and the symbol table: nothing here debugs these binaries, and linking the largest
# (Envoy Gateway's egctl, Kubernetes') took twice the CPU with them (15 s against 6.5 s for egctl).
LDFLAGS = "-s -w"
# Nor does the compiler write DWARF for any package: CoreDNS from an empty build cache took 64 s of CPU with it, 56 s without.
GCFLAGS = "all=-dwarf=false"


def cache_dir() -> Path:
    return Path(os.environ.get("ILUVATAR_CACHE") or Path.home() / ".cache" / "iluvatar")


def go_env() -> dict[str, str]:
    """The environment every go command runs in: caches outside the repo, checksums enforced."""
    cache = cache_dir()
    env = dict(os.environ)
    env.update(
        {
            "GOMODCACHE": str(cache / "go" / "mod"),
            "GOCACHE": str(cache / "go" / "build"),
            "GOPATH": str(cache / "go" / "path"),
            # The committed go.sum is the lock: a build never edits it or trusts an unknown sum.
            "GOFLAGS": "-mod=readonly -trimpath -buildvcs=false",
            "GOTOOLCHAIN": env.get("GOTOOLCHAIN", "auto"),
            "CGO_ENABLED": "0",
        }
    )
    env.pop("GONOSUMDB", None)
    env.pop("GONOSUMCHECK", None)
    env.pop("GOPRIVATE", None)
    if env.get("GOSUMDB") == "off":
        env.pop("GOSUMDB")
    return env


def _version(go: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60, check=True).stdout  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"go(\d+)\.(\d+)", out.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def dirhash_h1(archive: zipfile.ZipFile) -> str:
    """Go's `h1:` hash of a module zip (golang.org/x/mod/sumdb/dirhash.Hash1)."""
    summary = io.StringIO()
    for name in sorted(archive.namelist()):
        if name.endswith("/"):
            continue
        summary.write(f"{hashlib.sha256(archive.read(name)).hexdigest()}  {name}\n")
    return "h1:" + base64.b64encode(hashlib.sha256(summary.getvalue().encode()).digest()).decode()


def _bootstrap_go() -> str:
    """A pinned Go release from the module proxy, for machines without Go 1.21+."""
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
    if arch not in BOOTSTRAP_SUMS:
        raise GoBuildError(f"no Go 1.21+ on this machine and no pinned Go for linux-{arch}; install Go {BOOTSTRAP_GO} from go.dev")
    version = f"v0.0.1-go{BOOTSTRAP_GO}.linux-{arch}"
    root = cache_dir() / "go" / "toolchain" / version
    go = root / "bin" / "go"
    if go.exists():
        return str(go)
    url = f"{PROXY}/golang.org/toolchain/@v/{version}.zip"
    try:
        with urllib.request.urlopen(url, timeout=600) as response:  # noqa: S310 - a fixed https URL
            data = response.read()
    except OSError as e:
        raise GoBuildError(f"no Go 1.21+ on this machine, and fetching {url} failed: {e}") from None
    archive = zipfile.ZipFile(io.BytesIO(data))
    if (got := dirhash_h1(archive)) != BOOTSTRAP_SUMS[arch]:
        raise GoBuildError(f"{url}: checksum {got} does not match the pinned {BOOTSTRAP_SUMS[arch]}")
    prefix = f"golang.org/toolchain@{version}/"
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent))
    for info in archive.infolist():
        rel = info.filename.removeprefix(prefix)
        if info.is_dir() or not rel:
            continue
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(archive.read(info))
        target.chmod(0o755 if (info.external_attr >> 16) & 0o111 else 0o644)
    if root.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(root)
    return str(go)


def go_binary() -> str:
    """A `go` of at least MIN_GO: the machine's, or a pinned one fetched from the proxy."""
    found = shutil.which("go") or next((p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if Path(p).exists()), None)
    if found is not None and (_version(found) or (0, 0)) >= MIN_GO:
        return found
    return _bootstrap_go()


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One build of a program at a time, across processes (two test runs, two worktrees, two `pulumi up`s)."""
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _source_key(program: Program, go: str) -> str:
    """A hash of everything the binary depends on: the folder's files, the package and Go."""
    digest = hashlib.sha256()
    for path in sorted(p for p in program.folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(program.folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(f"{program.package}\0{program.modfile}\0{','.join(program.tags)}\0{_ldflags(program)}\0{GCFLAGS}\0{_version(go)}".encode())
    return digest.hexdigest()[:16]


def _ldflags(program: Program) -> str:
    return " ".join((LDFLAGS, *program.ldflags))


def build(program: Program) -> Path:
    """The program's binary, built if its sources changed since the last build."""
    go = go_binary()
    out = cache_dir() / "bin" / f"{program.name}-{_source_key(program, go)}"
    if out.exists():
        return out
    with _locked(program.name):
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}")
        tags = [f"-tags={','.join(program.tags)}"] if program.tags else []
        command = [
            go,
            "build",
            f"-modfile={program.modfile}",
            f"-ldflags={_ldflags(program)}",
            f"-gcflags={GCFLAGS}",
            *tags,
            "-o",
            str(tmp),
            program.package,
        ]
        result = subprocess.run(command, cwd=program.folder, env=go_env(), capture_output=True, text=True, timeout=3600)  # noqa: S603
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise GoBuildError(f"building {program.name} ({program.folder.name}/, {' '.join(command[1:])}) failed:\n{result.stderr.strip()}")
        tmp.rename(out)
    return out
