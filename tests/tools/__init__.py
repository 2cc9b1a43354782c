"""The real programs generated artifacts are checked with: they must be installed, never imitated.

.ci/run installs them from Debian's packages; a missing tool fails the test that needs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path


def require(tool: str) -> str:
    path = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if Path(p).exists()), None)
    if path is None:
        raise FileNotFoundError(f"{tool} is not installed; .ci/run installs it (apt-get install {tool})")
    return path


def busybox_applets(folder: Path, applets: Iterable[str]) -> Path:
    """`folder` made a PATH folder of busybox's `applets`, as the Alpine images the project's scripts run in have them
    (their /bin/sh and tools are busybox's), so a test runs a script with the shell and tools its container has."""
    busybox = require("busybox")
    folder.mkdir(exist_ok=True)
    for applet in applets:
        (folder / applet).symlink_to(busybox)
    return folder


def dnsmasq_test(conf: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    path = tmp / "dnsmasq.conf"
    path.write_text(conf)
    return subprocess.run([require("dnsmasq"), "--test", f"--conf-file={path}"], capture_output=True, text=True, timeout=30)


def cloud_init_schema(user_data: str, tmp: Path, name: str = "user-data") -> subprocess.CompletedProcess[str]:
    path = tmp / name
    path.write_text(user_data)
    return subprocess.run([require("cloud-init"), "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=120)


def cloud_init_trixie(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Debian 13's cloud-init (25.1, unpacked by `python -m tools.debian fetch`): Debian 12's 22.4
    cannot check a network-config. It runs on the system Python with Debian 12's cloud-init deps."""
    from tools import debian

    root = debian.path("cloud-init")
    env = {**os.environ, "PYTHONPATH": str(root / "usr/lib/python3/dist-packages")}
    return subprocess.run(["/usr/bin/python3", str(root / "usr/bin/cloud-init"), *args], capture_output=True, text=True, timeout=120, env=env)


def cloud_init_network_schema(network_config: str, tmp: Path, name: str = "network-config") -> subprocess.CompletedProcess[str]:
    path = tmp / name
    path.write_text(network_config)
    return cloud_init_trixie(["schema", "--schema-type", "network-config", "--config-file", str(path)])
