"""A container's view of the files, as its Pod spec mounts them: what a program in it can open, and nothing else.

The kubelet gives a container a root of its image plus its volumeMounts (a hostPath: that host folder, bind-mounted
at mountPath; a configMap or projected volume: the files it projects; an emptyDir: an empty folder). A path outside
them does not exist in the container, whatever the host holds there: an absolute symlink that points outside is
dangling in the container. This lays a container's root out so, in a mount namespace of its own, and runs a program
chrooted into it; the image's own files are the host's /usr and /etc (the real programs the tests run are the host's),
and `host` stands for the host's root (a hostPath `/x` is `host/x`). Nothing outside the private mount namespace
changes but the staging folders under `stage`.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any


def script(
    spec: dict[str, Any],
    container: str,
    host: Path,
    stage: Path,
    files: dict[str, dict[str, str]],
    argv: list[str],
    env: dict[str, str] | None = None,
) -> str:
    """Shell lines, for `unshare --mount --propagation private`, that lay out `container`'s root and exec `argv` in it.

    `files`: per configMap or projected volume, its files by path as the kubelet projects them."""
    c = next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == container)
    volumes = {v["name"]: v for v in spec["volumes"]}
    root = stage / "root"
    lines = ["set -e", f"R={shlex.quote(str(root))}", 'mkdir -p "$R"', 'mount -t tmpfs none "$R"']
    # The image: the host's programs and their libraries; /dev and /proc as a runtime gives them; an empty /tmp and /run.
    for d in ("usr", "etc", "dev", "proc"):
        lines += [f'mkdir -p "$R/{d}"', f'mount --rbind /{d} "$R/{d}"']
    for d in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink(f"/{d}"):
            lines.append(f'ln -s {shlex.quote(os.readlink(f"/{d}"))} "$R/{d}"')
        elif os.path.isdir(f"/{d}"):
            lines += [f'mkdir -p "$R/{d}"', f'mount --rbind /{d} "$R/{d}"']
    lines += ['mkdir -p "$R/tmp" "$R/run" "$R/var"', 'ln -s ../run "$R/var/run"']
    for mount in c.get("volumeMounts", []):
        vol = volumes[mount["name"]]
        target = '"$R"' + shlex.quote(mount["mountPath"])
        if "hostPath" in vol:
            src = host / vol["hostPath"]["path"].lstrip("/")
            if vol["hostPath"].get("type") == "DirectoryOrCreate":
                src.mkdir(parents=True, exist_ok=True)
            if not src.is_dir():
                raise AssertionError(f"hostPath {vol['hostPath']['path']} of volume {mount['name']} does not exist on the host")
            if "subPath" in mount:
                src = src / mount["subPath"]
        elif "emptyDir" in vol:
            src = stage / "empty" / mount["name"]
            src.mkdir(parents=True, exist_ok=True)
        else:
            # A configMap, secret or projected volume: the files the caller says the kubelet projects.
            src = stage / "projected" / mount["name"]
            for rel, text in files.get(mount["name"], {}).items():
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                (src / rel).write_text(text)
            src.mkdir(parents=True, exist_ok=True)
            if "subPath" in mount:
                src = src / mount["subPath"]
        lines.append(f"mkdir -p {target}" if src.is_dir() else f'mkdir -p "$(dirname {target})" && touch {target}')
        lines.append(f"mount --bind {shlex.quote(str(src))} {target}")
        if mount.get("readOnly"):
            lines.append(f"mount -o remount,bind,ro {target}")
    environment = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
    environment |= env or {}
    assigns = " ".join(
        shlex.quote(f"{k}={v}") for k, v in {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **environment}.items()
    )
    lines.append(f'exec chroot "$R" env -i {assigns} ' + " ".join(shlex.quote(a) for a in argv))
    return "\n".join(lines) + "\n"
