"""Pinned upstream Go modules: fetched through the module proxy, checked against committed sums.

`modules.sum` (beside this file, go.sum's format) pins each module at an exact version with its
`h1:` sum. `go mod download -json` fetches it into the Go module cache ($ILUVATAR_CACHE/go/mod),
which verifies it against the checksum database the proxy serves; its sum must then equal the
committed one. With ILUVATAR_SCHEMAS=DIR, DIR (a folder `mirror` wrote, in the proxy's file
layout) is the only source and there is no network; the committed sums are still the check.

Everything derived from a module (a prepared chart, CRD schemas) is made once into
$ILUVATAR_CACHE/upstream/, keyed by the module's sum and this package's code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from tools import gotools

PINS = Path(__file__).resolve().parent / "modules.sum"
MIRROR_ENV = "ILUVATAR_SCHEMAS"
TALOS_MACHINERY = "github.com/siderolabs/talos/pkg/machinery"

# What this package does to an artifact is part of its cache key: a change here re-derives everything.
_CODE_KEY = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(Path(__file__).resolve().parent.glob("*.py")))).hexdigest()[:12]
# libyaml when present: rendered charts and CRD files run to megabytes.
_FAST: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LOADER(_FAST):  # type: ignore[valid-type,misc]
    """YAML as Go's yaml reads it: a bare `=` (the `value` tag, in the Prometheus Operator's CRD enums) is a
    string, not an error."""


LOADER.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


class UpstreamError(Exception):
    """An upstream artifact could not be had or prepared; the message names which and why."""


def go_version(version: str) -> str:
    """A chart or release version as its Go module tags it (`1.18.4` -> `v1.18.4`)."""
    return version if version.startswith("v") else f"v{version}"


def pins(path: Path = PINS) -> dict[tuple[str, str], str]:
    """The pinned modules: (module, version) -> `h1:` sum, from a go.sum-format file (`#` comments)."""
    found: dict[tuple[str, str], str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("h1:"):
            raise UpstreamError(f"{path.name}:{number}: expected `module version h1:sum`, got {raw!r}")
        key = (parts[0], parts[1])
        if key in found:
            raise UpstreamError(f"{path.name}:{number}: {parts[0]}@{parts[1]} is pinned twice")
        found[key] = parts[2]
    return found


def pinned_sum(module: str, version: str) -> str:
    sums = pins()
    if (module, version) not in sums:
        raise UpstreamError(
            f"{module}@{version} is not pinned in tools/upstream/{PINS.name}; add it with `python -m tools.upstream pin {module}@{version}` (the sum is verified by the checksum database)"
        )
    return sums[(module, version)]


def mirror_dir() -> Path | None:
    """The offline module mirror set by ILUVATAR_SCHEMAS, if any."""
    value = os.environ.get(MIRROR_ENV)
    if not value:
        return None
    path = Path(value).resolve()
    if not path.is_dir():
        raise UpstreamError(f"{MIRROR_ENV}={value} is not a folder (make one with `python -m tools.upstream mirror DIR`)")
    return path


# Modules the checksum database does not hold: k3s' fork of kube-router is served under its own path while its go.mod
# names the upstream module, and the database answers its lookup 404. Their committed sum (the h1: of the proxy's zip)
# is then the only check, as a go.sum's is for any module.
UNKNOWN_TO_SUMDB = ("github.com/k3s-io/kube-router/v2",)


def _go_env(mirror: Path | None) -> dict[str, str]:
    env = gotools.go_env()
    env["GOWORK"] = "off"
    env["GOFLAGS"] = "-mod=mod"
    env["GONOSUMDB"] = ",".join(UNKNOWN_TO_SUMDB)
    if mirror is not None:
        # The mirror is the only source and there is no network; the committed sums are the check.
        env["GOPROXY"] = mirror.as_uri()
        env["GOSUMDB"] = "off"
    return env


def escape_path(module: str) -> str:
    """A module path as the proxy protocol spells it on disk (`DandyDeveloper` -> `!dandy!developer`)."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), module)


def _go_mod_download(module: str, version: str, mirror: Path | None) -> dict[str, Any]:
    """`go mod download -json module@version`, run outside any module so no go.mod decides anything."""
    with tempfile.TemporaryDirectory(prefix="iluvatar-upstream-") as cwd:
        result = subprocess.run(  # noqa: S603 - a fixed go command
            [gotools.go_binary(), "mod", "download", "-json", f"{module}@{version}"],
            cwd=cwd,
            env=_go_env(mirror),
            capture_output=True,
            text=True,
            timeout=1800,
        )
    try:
        info: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        info = {"Error": (result.stdout + result.stderr).strip()}
    if result.returncode != 0 or info.get("Error"):
        where = f"the mirror {mirror}" if mirror else "the Go module proxy"
        raise UpstreamError(f"fetching {module}@{version} from {where} failed: {info.get('Error') or result.stderr.strip()}")
    return info


def download(module: str, version: str) -> dict[str, Any]:
    """The module fetched (or found in the module cache) and checked against the committed sum."""
    want = pinned_sum(module, version)
    mirror = mirror_dir()
    info = _go_mod_download(module, version, mirror)
    if info.get("Sum") != want:
        where = f"the mirror {mirror}" if mirror else "the Go module proxy"
        raise UpstreamError(f"{module}@{version} from {where} has checksum {info.get('Sum')}, but tools/upstream/{PINS.name} pins {want}")
    return info


@functools.cache
def _module_dir(module: str, version: str, modcache: str, mirror: str) -> Path:
    return Path(download(module, version)["Dir"])


def module_dir(module: str, version: str) -> Path:
    """The verified, read-only source tree of a pinned module (in the Go module cache)."""
    return _module_dir(module, version, gotools.go_env()["GOMODCACHE"], os.environ.get(MIRROR_ENV, ""))


def pin(module: str, version: str, path: Path = PINS) -> str:
    """Fetch module@version through the proxy (sumdb-verified) and record its sum in the pins file."""
    if mirror_dir() is not None:
        raise UpstreamError(f"pinning needs the checksum database: unset {MIRROR_ENV}")
    info = _go_mod_download(module, version, None)
    if info["Version"] != version:
        raise UpstreamError(f"{module}@{version} resolved to {info['Version']}: pin exact versions only")
    lines = [line for line in path.read_text().splitlines() if line.split("#", 1)[0].split()[:2] != [module, version]]
    lines.append(f"{module} {version} {info['Sum']}")
    path.write_text("\n".join(lines) + "\n")
    return str(info["Sum"])


def mirror(target: Path, modules: Iterable[tuple[str, str]] | None = None) -> list[str]:
    """Copy pinned modules (default: all) into `target` in the proxy's file layout, for ILUVATAR_SCHEMAS."""
    copied = []
    for module, version in sorted(pins() if modules is None else modules):
        info = download(module, version)
        folder = target / escape_path(module) / "@v"
        folder.mkdir(parents=True, exist_ok=True)
        for key, suffix in (("Info", ".info"), ("GoMod", ".mod"), ("Zip", ".zip")):
            shutil.copyfile(info[key], folder / f"{version}{suffix}")
        listing = folder / "list"
        versions = set(listing.read_text().split()) if listing.exists() else set()
        listing.write_text("\n".join(sorted(versions | {version})) + "\n")
        copied.append(f"{module}@{version}")
    return copied


def derived(kind: str, name: str, key_parts: Iterable[str], make: Callable[[Path], None]) -> Path:
    """A folder under $ILUVATAR_CACHE/upstream/<kind>/ made once by `make`, atomically, keyed by inputs."""
    key = hashlib.sha256("\0".join([_CODE_KEY, *key_parts]).encode()).hexdigest()[:12]
    final = gotools.cache_dir() / "upstream" / kind / f"{name}-{key}"
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        make(staging)
        try:
            staging.rename(final)
        except OSError:
            if not final.is_dir():
                raise
            # Another process made it first: theirs and ours are the same bytes.
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return final


def copy_tree(source: Path, target: Path, exclude: Callable[[Path], bool] = lambda _: False) -> None:
    """Copy files (not modes: the module cache is read-only) so the copy can be prepared in place."""
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_file() and not exclude(rel):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / rel)


def talos_schema(version: str) -> Path:
    """The machine-config JSON schema of Talos `version`, from pkg/machinery at that version."""
    return module_dir(TALOS_MACHINERY, version) / "config" / "schemas" / "config.schema.json"
