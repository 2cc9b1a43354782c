"""Building the project's Go programs (the tests' checkers and the upgrader `pulumi up` runs) with the pinned Go:
one binary per source state, built once, stripped, and a failure that names the program.

Each test builds a one-file program with the machine's real Go. Binaries and locks go to the test's own
folder; Go's module and build caches stay the project's, so the standard library is not compiled again.
"""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

import pytest

from iluvatar import golang

HELLO = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello from %s") }\n'


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ILUVATAR_CACHE in the test's folder, with the project's Go caches kept."""
    project = golang.go_env()
    monkeypatch.setenv("ILUVATAR_CACHE", str(tmp_path / "cache"))
    original = golang.go_env

    def env() -> dict[str, str]:
        return {**original(), "GOCACHE": project["GOCACHE"], "GOMODCACHE": project["GOMODCACHE"]}

    monkeypatch.setattr(golang, "go_env", env)
    return tmp_path / "cache"


def _program(
    folder: Path, greeting: str = "one", source: str | None = None, tags: tuple[str, ...] = (), ldflags: tuple[str, ...] = ()
) -> golang.Program:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "go.mod").write_text("module example.com/hello\n\ngo 1.21\n")
    (folder / "main.go").write_text(source or HELLO % greeting)
    return golang.Program("hello", folder, tags=tags, ldflags=ldflags)


def test_a_program_is_built_once_per_source_state_into_the_cache(cache: Path, tmp_path: Path) -> None:
    program = _program(tmp_path / "hello")
    binary = golang.build(program)
    assert binary.parent == cache / "bin" and binary.name.startswith("hello-")
    assert subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout == "hello from one\n"
    built = binary.stat().st_mtime_ns
    assert golang.build(program) == binary and binary.stat().st_mtime_ns == built  # the same sources: not built again
    # Another source state is another binary; the first stays for whoever still runs it.
    changed = golang.build(_program(tmp_path / "hello", "two"))
    assert changed != binary and binary.exists()
    assert subprocess.run([str(changed)], capture_output=True, text=True, check=True).stdout == "hello from two\n"
    # Build tags are part of what a binary is: the same sources with a tag are another build.
    tagged = golang.build(_program(tmp_path / "hello", "two", tags=("netgo",)))
    assert tagged not in (binary, changed)
    assert sorted(p.name for p in (cache / "bin").iterdir()) == sorted([binary.name, changed.name, tagged.name])  # no temporary left


def test_binaries_carry_no_symbols_and_no_dwarf(cache: Path, tmp_path: Path) -> None:
    binary = golang.build(_program(tmp_path / "hello"))
    go = golang.go_binary()
    # Go's own tools read the binary: no symbol table (-ldflags=-s), and the compiler wrote no DWARF for any package.
    nm = subprocess.run([go, "tool", "nm", str(binary)], capture_output=True, text=True, check=False)
    assert nm.stderr.strip().endswith("no symbols")
    info = subprocess.run([go, "version", "-m", str(binary)], capture_output=True, text=True, check=True).stdout
    assert "\tbuild\t-gcflags=all=-dwarf=false\n" in info and "\tbuild\t-trimpath=true\n" in info and "\tbuild\tCGO_ENABLED=0\n" in info
    sections = subprocess.run(["readelf", "-S", "-W", str(binary)], capture_output=True, text=True, check=True).stdout
    assert ".debug_" not in sections and ".symtab" not in sections


def test_a_programs_own_linker_flags_stamp_it_and_are_part_of_what_it_is(cache: Path, tmp_path: Path) -> None:
    # As a Kubernetes release build stamps its version (tools.gotools.kubernetes_ldflags): -X on a package variable.
    source = 'package main\n\nimport "fmt"\n\nvar version = "unstamped"\n\nfunc main() { fmt.Println(version) }\n'
    plain = golang.build(_program(tmp_path / "stamp", source=source))
    stamped = golang.build(_program(tmp_path / "stamp", source=source, ldflags=("-X main.version=v1.2.3",)))
    assert stamped != plain
    assert [subprocess.run([str(b)], capture_output=True, text=True, check=True).stdout for b in (plain, stamped)] == ["unstamped\n", "v1.2.3\n"]
    # After the project's own flags, which still hold: no symbol table.
    nm = subprocess.run([golang.go_binary(), "tool", "nm", str(stamped)], capture_output=True, text=True, check=False)
    assert nm.stderr.strip().endswith("no symbols")


def test_a_compile_error_names_the_program_and_leaves_nothing(cache: Path, tmp_path: Path) -> None:
    program = _program(tmp_path / "broken", source="package main\n\nfunc main() { undefined() }\n")
    with pytest.raises(golang.GoBuildError, match=r"^building hello \(broken/, build -modfile=go\.mod .*\) failed:\n(.|\n)*undefined: undefined"):
        golang.build(program)
    assert [p.name for p in (cache / "bin").iterdir()] == []


def test_a_command_in_a_package_of_its_module_is_built_from_the_modules_folder(cache: Path, tmp_path: Path) -> None:
    """As the upgrader is: `cmd/NAME` wires the command, `internal/` holds what it imports, one go.mod over both."""
    folder = tmp_path / "split"
    (folder / "cmd" / "hello").mkdir(parents=True)
    (folder / "internal" / "greeting").mkdir(parents=True)
    (folder / "go.mod").write_text("module example.com/split\n\ngo 1.21\n")
    (folder / "internal" / "greeting" / "greeting.go").write_text('package greeting\n\nconst Text = "hello from internal"\n')
    main = 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/split/internal/greeting"\n)\n\nfunc main() { fmt.Println(greeting.Text) }\n'
    (folder / "cmd" / "hello" / "main.go").write_text(main)
    binary = golang.build(golang.Program("hello", folder, package="./cmd/hello"))
    assert subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout == "hello from internal\n"
    # A change under internal/ is a change of the command: the key hashes the whole folder.
    (folder / "internal" / "greeting" / "greeting.go").write_text('package greeting\n\nconst Text = "hello again"\n')
    again = golang.build(golang.Program("hello", folder, package="./cmd/hello"))
    assert again != binary
    assert subprocess.run([str(again)], capture_output=True, text=True, check=True).stdout == "hello again\n"
    # The module's folder has no command of its own: its default package builds nothing.
    with pytest.raises(golang.GoBuildError, match="no Go files"):
        golang.build(golang.Program("hello", folder))


def _alive_mentioning(text: str) -> list[str]:
    """The live processes whose command line names `text` (a build's folder): what a stopped build must not leave."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or text.encode() not in (entry / "cmdline").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state not in ("Z", "X"):
            found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


def test_a_build_past_its_bound_is_stopped_and_leaves_nothing(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty build cache: the standard library is compiled first, far longer than the 1 s bound. The go command and
    every compiler it started are killed, its partial output and work folder removed."""
    with_project_caches = golang.go_env
    monkeypatch.setattr(golang, "go_env", lambda: {**with_project_caches(), "GOCACHE": str(tmp_path / "empty-gocache")})
    started = []
    with pytest.raises(golang.GoBuildTimeoutError, match=r"^building hello \(hello/\) did not finish within 1 s: stopped$"):
        golang.build(_program(tmp_path / "hello"), timeout=1, building=lambda: started.append(True))
    assert started == [True]
    assert [p.name for p in (cache / "bin").iterdir()] == []
    assert _alive_mentioning(str(cache / "bin")) == []


def test_what_a_build_killed_outright_left_is_removed_by_the_next_build_of_that_program(cache: Path, tmp_path: Path) -> None:
    """A build whose process was SIGKILLed runs no cleanup: its temporary binary and work folder stay, until the next
    build of the program (under its lock, so never another build's files). Another program's are left alone."""
    bin_dir = cache / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / ".hello-0123456789abcdef.4242").write_bytes(b"\x7fELF half a binary")
    (bin_dir / ".hello-0123456789abcdef.4242.work" / "b001").mkdir(parents=True)
    (bin_dir / ".hello-node-0123456789abcdef.4242").write_bytes(b"another program's")
    binary = golang.build(_program(tmp_path / "hello"))
    assert sorted(p.name for p in bin_dir.iterdir()) == sorted([binary.name, ".hello-node-0123456789abcdef.4242"])


def test_the_wait_for_another_build_is_part_of_the_bound(cache: Path, tmp_path: Path) -> None:
    locks = cache / "locks"
    locks.mkdir(parents=True)
    with open(locks / "hello.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process building hello
        with pytest.raises(golang.GoBuildTimeoutError, match=r"^another build of hello \(another step, test run or worktree\) held its lock past"):
            golang.build(_program(tmp_path / "hello"), timeout=0.5)
    assert not (cache / "bin").exists() or [p.name for p in (cache / "bin").iterdir()] == []


def test_a_build_is_announced_only_when_it_builds(cache: Path, tmp_path: Path) -> None:
    said: list[str] = []
    program = _program(tmp_path / "hello")
    golang.build(program, building=lambda: said.append("building"))
    golang.build(program, building=lambda: said.append("building again"))
    assert said == ["building"]
