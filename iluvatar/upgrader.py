"""The upgrader: the Go program `pulumi up` runs for every Talos step the Talos provider cannot do safely.

It lives in `upgrader/` (its own go.mod and go.sum: machinery v1.13.0, client-go and kubectl
v0.34.1; the command is `cmd/upgrader`, each concern a package under `internal/`) and is built on
first need by `iluvatar.golang` with the project's pinned Go, into the cache, so a user's
`pulumi up` needs nothing installed beyond the project's own first command. Pulumi runs it as
`.venv/bin/iluvatar upgrader COMMAND ...` from the project folder: the upgrader's stdin, stdout
and stderr are the step's, and its exit code the step's, and every argument after
`upgrader` reaches it untouched, but `--timeout` after a build, which is part of the step: the
upgrader gets what the build left of it. First it asks to die with the shell pulumi-command runs
it in, and the upgrader runs in a child it supervises, so a SIGKILL of either the shell or this
process reaches the upgrader as SIGTERM (iluvatar.lifeline). Its interface is `upgrader/README.md`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import iluvatar
from iluvatar import golang, lifeline

ROOT = Path(__file__).resolve().parent.parent
# The module is the folder (its go.sum pins every dependency); the command is its cmd/upgrader package.
PROGRAM = golang.Program("upgrader", ROOT / "upgrader", package="./cmd/upgrader")

# The upgrader's own exit codes (upgrader/README.md): 0 success, 1 a failed check, 2 bad arguments.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build() -> Path:
    """The upgrader's binary, built if its sources changed since the last build."""
    return golang.build(PROGRAM)


# A Go duration (time.ParseDuration): decimal numbers, each with its unit.
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def go_duration(text: str) -> float | None:
    """A Go duration (`45m`, `1h30m`, `90s`) in seconds; None for what Go would not read as a positive one."""
    if not text or text == "0" or text.startswith(("-", "+")):
        return None
    seconds, at = 0.0, 0
    while at < len(text):
        part = _PART.match(text, at)
        if part is None:
            return None
        seconds += float(part.group(1)) * _UNITS[part.group(2)]
        at = part.end()
    return seconds or None


def go_duration_text(seconds: float) -> str:
    """Whole seconds as Go prints a duration: `41m48s`, `1h2m3s`, `59s`."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def timeout_of(argv: Sequence[str]) -> tuple[int, str, float] | None:
    """The command's `--timeout`: where its value is in argv, as written, and in seconds (the last one given, as
    Go's flag package takes it); None when there is none it reads."""
    found = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if name not in ("-timeout", "--timeout"):
            continue
        if eq:
            found = (i, value)
        elif i + 1 < len(argv):
            found = (i + 1, argv[i + 1])
    if found is None or (seconds := go_duration(found[1])) is None:
        return None
    return found[0], found[1], seconds


def with_timeout(argv: Sequence[str], at: int, seconds: float) -> list[str]:
    """argv with the `--timeout` value at `at` replaced by `seconds` (the `--timeout=` form kept)."""
    out = list(argv)
    value = go_duration_text(seconds)
    out[at] = f"{out[at].partition('=')[0]}={value}" if out[at].startswith("-") else value
    return out


# What to do when a build does not fit in a step's bound.
AHEAD = "; build it once outside any step (`.venv/bin/iluvatar upgrader --help` builds it, then prints its usage), then run the step again"


def exec_(argv: Sequence[str]) -> NoReturn:
    """Run the upgrader, `argv` passed through untouched but for what a build took, and end as it ends.

    First it asks to die with its parent (iluvatar.lifeline): under Pulumi, the shell pulumi-command ran the
    step in. Then it splits into a supervisor and the worker that becomes the upgrader (`become`), so the
    upgrader gets SIGTERM whether the shell's SIGKILL hits the shell (dash forks) or this process (bash
    execs a lone command in place of itself).
    """
    if not lifeline.arm(iluvatar.PARENT):
        print(f"upgrader: its parent (pid {iluvatar.PARENT}) ended before it started: nothing ran", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    lifeline.supervised()
    become(argv)


def become(argv: Sequence[str]) -> NoReturn:
    """Replace this process with the upgrader, built first if need be.

    A build (the sources are new to this machine's cache) is part of the step: it is said on stderr,
    bounded by the command's `--timeout`, and the upgrader gets only what is left of it.
    """
    start = time.monotonic()
    bound = timeout_of(argv)
    within = f"this step's --timeout {bound[1]}" if bound else f"the build's own bound, {golang.BUILD_TIMEOUT:.0f} s"
    built = False

    def building() -> None:
        nonlocal built
        built = True
        print(
            f"upgrader: building the upgrader first: its sources ({PROGRAM.folder.name}/) are not built in this machine's cache yet "
            f"(once per change of them, a few minutes from cold); the build counts against {within}",
            file=sys.stderr,
            flush=True,
        )

    try:
        with lifeline.signals_raise():
            binary = golang.build(PROGRAM, timeout=bound[2] if bound else golang.BUILD_TIMEOUT, building=building)
    except golang.GoBuildError as e:
        # No check ran, so no FAILED line: the last line says what to fix.
        ahead = AHEAD if isinstance(e, golang.GoBuildTimeoutError) else ""
        print(f"upgrader: cannot build the upgrader within {within}: {e}{ahead}", file=sys.stderr)
        if argv[:1] == ["probe"]:
            # The probe never fails a run, `pulumi preview` included (it runs there too): it found nothing, and says why.
            print(json.dumps({"nodes": {}}))
            sys.exit(EXIT_OK)
        if argv[:1] == ["secret-key"]:
            # Asked at `pulumi preview` too, and never failing it: it could not look.
            print(json.dumps({"secret": "unreachable"}))
            sys.exit(EXIT_OK)
        sys.exit(EXIT_FAILED)
    except lifeline.Stopped as e:
        print(f"upgrader: stopped by {e} while the upgrader was being built: nothing ran (the build starts again at the next run)", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    if built and bound:
        took = time.monotonic() - start
        left = bound[2] - took
        if left < 1:
            print(f"upgrader: cannot build the upgrader within {within}: the build took {took:.0f} s of it; nothing ran{AHEAD}", file=sys.stderr)
            sys.exit(EXIT_FAILED)
        argv = with_timeout(argv, bound[0], left)
        print(f"upgrader: built in {took:.0f} s; the step goes on with --timeout {go_duration_text(left)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, [str(binary), *argv])  # noqa: S606 - our own binary, arguments passed through as given
