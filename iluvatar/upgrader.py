"""The upgrader: the Go program `pulumi up` runs for every Talos step the Talos provider cannot do safely.

It lives in `upgrader/` (its own go.mod and go.sum: machinery v1.13.0, client-go and kubectl
v0.34.1; the command is `cmd/upgrader`, each concern a package under `internal/`) and is built on
first need by `iluvatar.golang` with the project's pinned Go, into the cache, so a user's
`pulumi up` needs nothing installed beyond the project's own first command. Pulumi runs it as
`.venv/bin/iluvatar upgrader COMMAND ...` from the project folder: the process becomes the
upgrader (stdin, stdout, stderr and the exit code are its own), and every argument after
`upgrader` reaches it untouched. Its interface is `upgrader/README.md`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from iluvatar import golang

ROOT = Path(__file__).resolve().parent.parent
# The module is the folder (its go.sum pins every dependency); the command is its cmd/upgrader package.
PROGRAM = golang.Program("upgrader", ROOT / "upgrader", package="./cmd/upgrader")

# The upgrader's own exit codes (upgrader/README.md): 0 success, 1 a failed check, 2 bad arguments.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build() -> Path:
    """The upgrader's binary, built if its sources changed since the last build."""
    return golang.build(PROGRAM)


def exec_(argv: Sequence[str]) -> NoReturn:
    """Replace this process with the upgrader, `argv` passed through untouched."""
    try:
        binary = build()
    except golang.GoBuildError as e:
        # No check ran, so no FAILED line: the last line says what to fix.
        print(f"upgrader: cannot build the upgrader: {e}", file=sys.stderr)
        if argv[:1] == ["probe"]:
            # The probe never fails a run, `pulumi preview` included (it runs there too): it found nothing, and says why.
            print(json.dumps({"nodes": {}}))
            sys.exit(EXIT_OK)
        sys.exit(EXIT_FAILED)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, [str(binary), *argv])  # noqa: S606 - our own binary, arguments passed through as given
