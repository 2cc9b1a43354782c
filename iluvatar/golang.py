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
import functools
import hashlib
import io
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from iluvatar import lifeline

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


class GoBuildTimeoutError(GoBuildError):
    """A build did not finish within its bound (the wait for another build of the program included), and was stopped."""


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
    """The minor of Go the `go` command at that path runs, as `go env GOVERSION` says it.

    Asked once per process for each file the command is (its path and inode, size and modification time) and
    what else decides which toolchain answers (GOTOOLCHAIN, and the go.mod of the folder it is asked in): every
    `build` asks twice (the command's minor, then the cache key's), and a process of the tests calls `build`
    before each run of a checker, hundreds of times, each `go env` a process of its own."""
    try:
        found = os.stat(go)
        folder = os.getcwd()
    except OSError:  # no such command; or asked in a folder since removed, where go decides alone (not kept)
        return _asked_version.__wrapped__(go, (0, 0, 0, 0), "", "")
    return _asked_version(go, (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns), os.environ.get("GOTOOLCHAIN", ""), folder)


@functools.lru_cache(maxsize=16)
def _asked_version(go: str, _file: tuple[int, int, int, int], _toolchain: str, _folder: str) -> tuple[int, int] | None:
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


def run_go_tests(module: Path) -> subprocess.CompletedProcess[str]:
    """`go test ./...` in a module of this repository, in the cache's Go environment, as the tests run the Go unit tests
    of the programs they build (Go's own test cache reuses a package's result while its test binary and inputs are
    unchanged). The caller judges the result."""
    command = [go_binary(), "test", "./..."]
    return subprocess.run(command, cwd=module, env=go_env(), capture_output=True, text=True, timeout=900, check=False)  # noqa: S603


@contextlib.contextmanager
def _locked(name: str, deadline: float) -> Iterator[None]:
    """One build of a program at a time, across processes (two test runs, two worktrees, two `pulumi up`s).

    The wait for another build is part of this one's bound (`deadline`, time.monotonic()).
    """
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}.lock", "w") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise GoBuildTimeoutError(
                        f"another build of {name} (another step, test run or worktree) held its lock past this build's bound"
                    ) from None
                time.sleep(0.2)
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


# A build's own bound when its caller gives none: the slowest cold build here, the test control plane's, takes
# 10+ minutes on 2 cores (docs/proof/performance.md).
BUILD_TIMEOUT = 3600.0


def _leftover(name: str) -> re.Pattern[str]:
    """A build's temporary binary and work folder (`.NAME-KEY.PID`, `.NAME-KEY.PID.work`), as `build` names them."""
    return re.compile(rf"\.{re.escape(name)}-[0-9a-f]{{16}}\.\d+(\.work)?")


def _sweep(folder: Path, name: str) -> None:
    """What a build of `name` killed outright (SIGKILL: no `finally`) left; under the program's lock nothing else writes them."""
    pattern = _leftover(name)
    for path in folder.iterdir():
        if pattern.fullmatch(path.name):
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _stop(process: subprocess.Popen[str]) -> None:
    """The go command and everything it started (compile, link, a toolchain download): its own process group, killed,
    and gone when this returns."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    _until_gone(process.pid)


def _until_gone(pgid: int, bound: float = 10.0) -> None:
    """Until no live process is left in the group `pgid`, at most `bound` seconds. Reaping the go command is not the
    end of its compilers: a SIGKILLed process runs on until it leaves the kernel (a compiler writing its object file on
    a loaded machine, seen still running after the go command was reaped), and its zombie, once it is one, waits for
    its new parent to reap it; only the live ones count. Where there is no /proc (not Linux), there is nothing to read."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    deadline = time.monotonic() + bound

    def live() -> bool:
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                # proc(5): pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
        return False

    while live() and time.monotonic() < deadline:
        time.sleep(0.02)


def build(program: Program, timeout: float = BUILD_TIMEOUT, building: Callable[[], None] | None = None) -> Path:
    """The program's binary, built if its sources changed since the last build.

    `timeout` (seconds) bounds it all, the wait for another build of the program included: past it the build
    is stopped and GoBuildError says so. `building` is called once a build starts (the binary is not in the
    cache), e.g. to say so. However a build ends short (its bound, a compile error, a signal its caller
    turned into an exception: iluvatar.lifeline), it leaves nothing: the go command and every process it
    started are killed (its own process group), its temporary binary and work folder removed; the binary
    itself appears only by a rename, whole. A build killed outright (SIGKILL of this process) leaves its
    temporary files, which the next build of the program removes.
    """
    deadline = time.monotonic() + timeout
    go = go_binary()
    out = cache_dir() / "bin" / f"{program.name}-{_source_key(program, go)}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _locked(program.name, deadline):
        if out.exists():
            return out
        _sweep(out.parent, program.name)
        if building is not None:
            building()
        tmp = out.with_name(f".{out.name}.{os.getpid()}")
        work = tmp.with_name(f"{tmp.name}.work")
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
        # GOTMPDIR: go's own work folder ($WORK) next to the binary, removed with it however the build ends.
        env = {**go_env(), "GOTMPDIR": str(work)}
        process: subprocess.Popen[str] | None = None
        try:
            work.mkdir()
            process = subprocess.Popen(  # noqa: S603
                command,
                cwd=program.folder,
                env=env,
                stdin=subprocess.DEVNULL,  # never a step's stdin (its secrets), which pulumi-command waits to have written
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
                # The go command dies with this process even when it is killed outright (a parent with threads cannot ask).
                preexec_fn=lifeline.die_with_parent if lifeline.single_threaded() else None,
            )
            try:
                _, stderr = process.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise GoBuildTimeoutError(
                    f"building {program.name} ({program.folder.name}/) did not finish within {timeout:.0f} s: stopped"
                ) from None
            if process.returncode != 0:
                raise GoBuildError(f"building {program.name} ({program.folder.name}/, {' '.join(command[1:])}) failed:\n{stderr.strip()}")
            tmp.rename(out)
        finally:
            if process is not None:
                _stop(process)
            tmp.unlink(missing_ok=True)
            shutil.rmtree(work, ignore_errors=True)
    return out
