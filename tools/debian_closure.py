"""Which Debian packages a pod must download: a package and every one it needs that its image lacks, resolved by the
real apt against a Debian index, offline (no network, nothing installed: `apt-get install --simulate` with its own
status file, lists and cache).

The image is modelled as debuerreotype makes Debian's official images (minbase: every package of Priority `required`,
and apt), with their dependencies, at the index's versions. stacks.pins.DEBS holds what this computes;
tests/plans/test_netboot_debs.py runs it against the kept extract of the index (the stanzas of the image and of the
pinned sets), so a set missing a package, or holding one apt would not install, fails there.

    python -m tools.debian_closure PACKAGES OUT PKG[=VERSION]...   # print the set as pins.DEBS entries; write the extract

PACKAGES is an uncompressed main/binary-arm64/Packages of the suite the pod's image is; OUT the extract to write
(merged with what it holds already, so one extract serves every set of a suite).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ARCH = "arm64"
# What the extract keeps of a stanza: what apt resolves with, and what the pins are checked against.
FIELDS = ("Package", "Version", "Architecture", "Multi-Arch", "Priority", "Essential", "Pre-Depends", "Depends", "Provides",
          "Breaks", "Conflicts", "Replaces", "Filename", "Size", "SHA256")  # fmt: skip


def parse(text: str) -> dict[str, dict[str, str]]:
    """A Packages file's stanzas by package name (one version per name in a suite's index)."""
    out: dict[str, dict[str, str]] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields:
            out[fields["Package"]] = fields
    return out


def _names(field: str) -> list[list[str]]:
    """A Depends-like field as its alternatives' package names."""
    return [[re.split(r"[ (:]", a.strip())[0] for a in group.split("|")] for group in field.split(",") if group.strip()]


def image(index: dict[str, dict[str, str]]) -> set[str]:
    """The packages of a minbase image: Priority required, apt, and what they depend on. A dependency is met by a
    package the image has or by one that provides it (`awk` by the required mawk); else its first alternative in the
    index comes in."""
    providers: dict[str, set[str]] = {}
    for name, fields in index.items():
        for p in fields.get("Provides", "").split(","):
            if p.strip():
                providers.setdefault(re.split(r"[ (]", p.strip())[0], set()).add(name)
    have = {n for n, f in index.items() if f.get("Priority") == "required"} | {"apt"}
    todo = sorted(have)
    while todo:
        name = todo.pop()
        for group in _names(index[name].get("Depends", "") + "," + index[name].get("Pre-Depends", "")):
            if any(a in have or providers.get(a, set()) & have for a in group):
                continue
            pick = next((a for a in group if a in index), None) or min(providers.get(group[0], {group[0]}))
            if pick in index:
                have.add(pick)
                todo.append(pick)
    return have


def _stanza(fields: dict[str, str], installed: bool = False) -> str:
    lines = [f"{k}: {fields[k]}" for k in FIELDS if k in fields]
    if installed:
        lines.insert(1, "Status: install ok installed")
    return "\n".join(lines) + "\n"


def extract(index: dict[str, dict[str, str]], names: set[str]) -> str:
    return "\n".join(_stanza(index[n]) for n in sorted(names))


def simulate(index: dict[str, dict[str, str]], installed: set[str], want: list[str]) -> list[tuple[str, str]]:
    """What apt installs for `want` (NAME or NAME=VERSION) on a system holding `installed`, no recommends: (name, version)
    per `Inst` line, in apt's order. Raises with apt's words when it cannot."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError("apt-get is not installed; tools.debian_closure needs Debian's apt")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "repo").mkdir()
        (root / "repo" / "Packages").write_text(extract(index, set(index)))
        (root / "status").write_text("\n".join(_stanza(index[n], installed=True) for n in sorted(installed)))
        (root / "sources.list").write_text(f"deb [trusted=yes] file:{root}/repo ./\n")
        for sub in ("lists/partial", "cache/archives/partial", "empty"):
            (root / sub).mkdir(parents=True)
        options = {
            "Dir::State::status": f"{root}/status",
            "Dir::State::Lists": f"{root}/lists",
            "Dir::Cache": f"{root}/cache",
            "Dir::Etc::SourceList": f"{root}/sources.list",
            "Dir::Etc::SourceParts": f"{root}/empty",
            "Dir::Etc::Preferences": f"{root}/empty/none",
            "Dir::Etc::PreferencesParts": f"{root}/empty",
            "APT::Architecture": ARCH,
            "APT::Architectures": ARCH,
            "APT::Install-Recommends": "false",
            "Debug::NoLocking": "1",
            # apt's sandbox user cannot read the temporary folder: root reads it, as on a Pi's pod.
            "APT::Sandbox::User": "root",
        }
        args = [apt, *(x for k, v in options.items() for x in ("-o", f"{k}={v}"))]
        subprocess.run([*args, "update", "-qq"], check=True, capture_output=True, text=True)  # noqa: S603 - the system's apt, offline
        done = subprocess.run([*args, "install", "--simulate", "-q", *want], capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError(f"apt cannot install {' '.join(want)} on the image: {done.stdout}{done.stderr}")
    return [(m[1], m[2]) for m in re.finditer(r"^Inst (\S+) (?:\[\S+\] )?\((\S+)", done.stdout, re.M)]


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    index = parse(Path(argv[0]).read_text())
    base = image(index)
    got = simulate(index, base, argv[2:])
    out = Path(argv[1])
    kept = parse(out.read_text()) if out.exists() else {}
    names = set(kept) | base | {n for n, _ in got}
    out.write_text(extract({**kept, **{n: index[n] for n in names if n in index}}, names))
    for name, _ in got:
        print(f'        "{index[name]["Filename"]}": "{index[name]["SHA256"]}",')
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
