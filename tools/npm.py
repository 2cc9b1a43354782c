"""An npm package the tests run, installed from its committed lock into `$ILUVATAR_CACHE/node/`, never the repository.

`tools/<name>/package-lock.json` pins the package and every dependency with integrity hashes. The install folder is
named by the lock's hash, so a second install is instant and a new lock installs beside the old. `npm ci` runs in a
staging folder under a lock file, and the folder is renamed into place only once whole: two test workers never install
twice, and a killed install leaves no half folder that looks installed.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from tools.gotools import cache_dir


class NpmCiError(Exception):
    """`npm ci` failed; the message names the package folder and holds npm's stderr."""


def install_root(package_dir: Path) -> Path:
    """Where the package of PACKAGE_DIR (tools/<name>) is installed: named by its package.json and lock's hash."""
    files = [package_dir / "package.json", package_dir / "package-lock.json"]
    key = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    return cache_dir() / "node" / f"{package_dir.name}-{key}"


def npm_ci(npm: str, package_dir: Path, installed: Callable[[], bool], timeout: float) -> None:
    """Install PACKAGE_DIR's lock into install_root(package_dir) unless `installed()` says it is there already."""
    root = install_root(package_dir)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed():
            return
        staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=".staging-"))
        for name in ("package.json", "package-lock.json"):
            shutil.copy(package_dir / name, staging / name)
        # --ignore-scripts: nothing runs at install time; the lock's integrity hashes check every tarball.
        command = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--cache", str(cache_dir() / "npm")]
        result = subprocess.run(command, cwd=staging, capture_output=True, text=True, timeout=timeout)  # noqa: S603
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise NpmCiError(f"npm ci in tools/{package_dir.name} failed:\n{result.stderr.strip()}")
        staging.rename(root)
