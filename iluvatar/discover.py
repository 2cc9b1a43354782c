"""`iluvatar discover STACK`: the machines waiting in Talos's maintenance mode, as ready inventory entries.

It lists the machines the netboot service booted to be discovered (arda.discovery), from its leases, read through
the Ainur's API with the user's kubeconfig; asks each what it is over Talos's maintenance API, with machinery's own
client (`upgrader discover`: the upgrader's binary, built as `pulumi up` builds it); and prints one entry of
`iluvatar:nodes` per machine (plans.discovery). With `--write`, it adds them to the stack file in place: the lines
go after the last machine, every other byte of the file as it was (comments, order, styles), and the stack is
validated before (a stack that does not validate is not written to) and after (nothing is written unless the new
stack validates). It only reads the LAN: the next `pulumi up` installs what was added, as for any machine.

It also says which machines of the inventory the network has not seen: no answer on their Talos API and no
current lease. A hint, for the retire flow (docs/day2.md#retiring-a-disk-or-a-machine); it changes nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from plans import discovery as plan
from stacks.boards import ARDA_ROLES
from stacks.errors import StackConfigError
from stacks.load import load_stack_file
from stacks.model import StackConfig

APID_PORT = 50000
REACH_SECONDS = 2.0  # how long an inventory machine has to accept a connection on its Talos API port


class DiscoverError(Exception):
    """The command cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class Found:
    """What `upgrader discover` answered: the leases and every machine asked."""

    leases: list[dict[str, Any]]
    machines: list[dict[str, Any]]
    leases_error: str = ""


def ask(kubeconfig: str | None, context: str | None, addresses: Sequence[str], leases: bool, deadline: float, port: int = APID_PORT) -> Found:
    """Run `upgrader discover` (built on first need, into the cache, as `pulumi up` builds it)."""
    from iluvatar import upgrader

    try:
        binary = upgrader.build()
    except Exception as e:  # a build failure is the command's to report, in one line
        raise DiscoverError(f"the upgrader (which asks the machines) could not be built: {str(e).splitlines()[0]}") from None
    args = [str(binary), "discover", f"--deadline={int(deadline)}s", f"--leases={'true' if leases else 'false'}"]
    if kubeconfig:
        args.append(f"--kubeconfig={kubeconfig}")
    if context:
        args.append(f"--context={context}")
    for i, address in enumerate(addresses):
        args.append(f"--node=machine-{i + 1}={address}" if ":" in address else f"--node=machine-{i + 1}={address}:{port}")
    result = subprocess.run(args, capture_output=True, text=True, timeout=deadline * 3 + 60, stdin=subprocess.DEVNULL)  # noqa: S603
    if result.returncode != 0:
        last = [line for line in result.stderr.splitlines() if line.strip()][-1:] or ["(no message)"]
        raise DiscoverError(last[0].removeprefix("upgrader: FAILED: - : ").removeprefix("upgrader: "))
    doc = json.loads(result.stdout)
    return Found(doc["leases"], doc["machines"], doc.get("leasesError", ""))


WINDOW_DURATION = re.compile(r"^([0-9]+)(m|h)$")
MIN_WINDOW_SECONDS, MAX_WINDOW_SECONDS = 60, 12 * 3600  # upgrader's discovery.MinWindow and MaxWindow


def window_seconds(text: str) -> int:
    """`--arm`'s duration (`30m`, `2h`) in seconds, within the window's bounds."""
    m = WINDOW_DURATION.match(text)
    seconds = int(m.group(1)) * (60 if m.group(2) == "m" else 3600) if m else 0
    if not MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
        raise DiscoverError(f"--arm {text}: give minutes or hours, from 1m to 12h (e.g. --arm 30m)")
    return seconds


def arm(kubeconfig: str | None, context: str | None, seconds: int, deadline: float) -> dict[str, Any]:
    """Open (seconds > 0) or close (0) the discovery window: `upgrader discover --arm/--disarm` writes the ConfigMap
    the netboot pod's discovery-window loop reads (plans.netboot.window)."""
    from iluvatar import upgrader

    try:
        binary = upgrader.build()
    except Exception as e:  # a build failure is the command's to report, in one line
        raise DiscoverError(f"the upgrader (which writes the window) could not be built: {str(e).splitlines()[0]}") from None
    args = [str(binary), "discover", f"--deadline={int(deadline)}s", f"--arm={seconds}s" if seconds else "--disarm"]
    if kubeconfig:
        args.append(f"--kubeconfig={kubeconfig}")
    if context:
        args.append(f"--context={context}")
    result = subprocess.run(args, capture_output=True, text=True, timeout=deadline * 3 + 60, stdin=subprocess.DEVNULL)  # noqa: S603
    if result.returncode != 0:
        last = [line for line in result.stderr.splitlines() if line.strip()][-1:] or ["(no message)"]
        raise DiscoverError(last[0].removeprefix("upgrader: FAILED: - : ").removeprefix("upgrader: "))
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def machines_of(found: Found) -> list[plan.Machine]:
    """Each machine asked, with the MAC of the lease it was found by."""
    by_ip = {lease["ip"]: lease for lease in found.leases}
    return [plan.Machine.from_json(m, (by_ip.get(m["address"]) or {}).get("mac")) for m in found.machines]


# --- printing ---------------------------------------------------------------------------------------------------

_PLAIN_UNSAFE = set(",[]{}#&*!|>'\"%@`")
# What Pulumi's YAML (gopkg.in/yaml.v3, YAML 1.2's core schema) reads as no string where PyYAML (YAML 1.1) may read
# a string (resolve.go:124, 169-205 at v3.0.1): a timestamp, an int (strconv.ParseInt base 0 after dropping `_`: 0o17,
# 0b1, 0x1f), a yamlStyleFloat (12e3, with no dot, which 1.1 reads as a string), the special floats, nulls and bools.
# Such a value is double-quoted, so both read the serial or model the disk reported.
_YAML12_NOT_STRING = re.compile(
    r"^(?:[-+]?(?:[0-9]+|0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+)"
    r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|~|null|Null|NULL|true|True|TRUE|false|False|FALSE"
    r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}.*)$"
)


def scalar(value: object) -> str:
    """A value as the stack files write it in a flow mapping: plain where YAML reads it back as the same string,
    double-quoted otherwise (MACs always, as the shipped stacks write them)."""
    text = str(value)
    plain = (
        text
        and text == text.strip()
        and not (_PLAIN_UNSAFE & set(text[:1]))
        and not (set(",[]{}") & set(text))
        and ": " not in text
        and " #" not in text
        and not text.startswith(("- ", "? ", ": "))
        and not (text.count(":") >= 5 and len(text) == 17)  # a MAC
        and not _YAML12_NOT_STRING.match(text.replace("_", ""))
    )
    if plain:
        try:
            plain = yaml.safe_load(f"{{k: {text}}}") == {"k": text}
        except yaml.YAMLError:
            plain = False
    return text if plain else json.dumps(text, ensure_ascii=False)


def flow(node: dict[str, Any]) -> str:
    """One inventory entry on one line, as the shipped stacks write a machine."""

    def value(v: object) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return scalar(v)

    return value(node)


def describe(m: plan.Machine) -> list[str]:
    """What the machine said, for the comment above its entry."""
    sys_info = m.system or {}
    what = " ".join(x for x in (sys_info.get("manufacturer"), sys_info.get("productName")) if x) or "no SMBIOS"
    serial = f" (serial {sys_info['serialNumber']})" if sys_info.get("serialNumber") else ""
    talos = f"Talos {m.version}" if m.version else "Talos"
    lines = [f"{m.mac or 'no MAC'} at {m.address} ({m.name}): {what}{serial}, {m.arch or 'unknown architecture'}, {talos} in maintenance mode"]
    links = [
        f"{link['id']} {link.get('permanentAddr') or link.get('hardwareAddr')}"
        + (f" {link['speedMbps']} Mb/s" if link.get("speedMbps") else "")
        + (f" ({link['driver']})" if link.get("driver") else "")
        for link in m.links
        if link.get("physical")
    ]
    if links:
        lines.append("  links: " + "; ".join(links))
    return lines


def entry_lines(e: plan.Entry, indent: str) -> list[str]:
    """An entry as stack-file lines: what the machine is, the notes, the entry itself (commented out when it has a problem)."""
    lines = [f"{indent}# discovered: {line}" for line in describe(e.machine)]
    lines += [f"{indent}#   {note}" for note in e.notes]
    if e.node is None:
        lines.append(f"{indent}# not added: {e.problem}")
        return lines
    lines.append(f"{indent}#   role: istari (a worker) or valinor (a control plane: keep their number odd); name: yours to choose")
    lines.append(f"{indent}- {flow(e.node)}")
    return lines


# --- writing ----------------------------------------------------------------------------------------------------


def _last_line(node: yaml.Node) -> int:
    """The last line (0-based) any part of a composed node is written on."""
    end = node.end_mark.line - (1 if node.end_mark.column == 0 else 0)
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [x for pair in node.value for x in pair]
    return max([node.start_mark.line, *(_last_line(c) for c in children)]) if children else end


def insert_entries(text: str, path: Path, block: list[str] | None = None) -> tuple[str, str]:
    """The stack file's text with `block` (lines) after the last machine of iluvatar:nodes, and the indentation its
    machines are written at. Nothing else of the file changes."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    config = next((v for k, v in root.value if k.value == "config"), None) if isinstance(root, yaml.MappingNode) else None
    nodes = next((v for k, v in config.value if k.value == "iluvatar:nodes"), None) if isinstance(config, yaml.MappingNode) else None
    if not isinstance(nodes, yaml.SequenceNode) or not nodes.value:
        raise DiscoverError(f"{path}: iluvatar:nodes is not a list of machines; discover adds to one")
    if nodes.flow_style:
        raise DiscoverError(f"{path}: iluvatar:nodes is written as one [ ... ] list; write it one machine a line (- {{...}}) and run discover again")
    lines = text.splitlines(keepends=True)
    last = nodes.value[-1]
    first_line = lines[last.start_mark.line]
    indent = first_line[: len(first_line) - len(first_line.lstrip())]
    if not first_line.lstrip().startswith("-"):
        # A block item's mapping starts after its dash: the dash is on the same line, before the mapping's column.
        indent = " " * max(0, last.start_mark.column - 2)
    if block is None:
        return text, indent
    at = min(_last_line(last) + 1, len(lines))
    # After the list's own trailing comments too, so a new entry is the list's last line: a flow mapping that ends in a
    # flow collection and is followed by a comment of the list is re-encoded by Pulumi's marshaler (gopkg.in/yaml.v3)
    # with a trailing comma (`[...],}`), which tests/iluvatar/test_discover.py's round trip would show.
    while at < len(lines) and lines[at].lstrip().startswith("#") and len(lines[at]) - len(lines[at].lstrip()) >= len(indent):
        at += 1
    newline = "\r\n" if "\r\n" in text else "\n"  # a file written on Windows keeps its line ends
    if at and not lines[at - 1].endswith("\n"):
        lines[at - 1] += newline
    return "".join(lines[:at] + [line + newline for line in block] + lines[at:]), indent


def write(path: Path, stack: StackConfig, entries: Sequence[plan.Entry]) -> int:
    """Add the entries to the stack file: validated after, written whole or not at all. The number of machines added."""
    text = path.read_bytes().decode("utf-8")
    _, indent = insert_entries(text, path)
    # The machines that get no entry first (their comments), the entries last: see insert_entries.
    block = [line for e in sorted(entries, key=lambda e: e.node is not None) for line in entry_lines(e, indent)]
    new, _ = insert_entries(text, path, block)
    with tempfile.TemporaryDirectory() as tmp:
        # Validated as it will be read: same name, beside the project's Pulumi.yaml (its secrets backend).
        candidate = Path(tmp) / path.name
        candidate.write_bytes(new.encode())
        project = path.resolve().parent / "Pulumi.yaml"
        if project.exists():
            (Path(tmp) / "Pulumi.yaml").write_bytes(project.read_bytes())
        try:
            load_stack_file(candidate)
        except StackConfigError as e:
            raise DiscoverError(
                f"{path}: the stack with the new machines would not validate, so nothing was written:\n"
                + "\n".join(f"  {p}" for p in e.problems)
                + "\n  (a role, name or address of yours? give --role, or write the entries above by hand)"
            ) from None
    # Beside the file (a symlink's target, so the link stays one), synced, then renamed over it and the folder synced:
    # a failure or a power cut leaves the old file or the new one whole.
    target = path.resolve()
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as staged:
        staged.write(new.encode())
        staged.flush()
        os.fsync(staged.fileno())
    Path(staged.name).chmod(target.stat().st_mode & 0o777)
    Path(staged.name).replace(target)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return sum(1 for e in entries if e.node is not None)


# --- not seen ---------------------------------------------------------------------------------------------------


def reachable(address: str, port: int = APID_PORT, seconds: float = REACH_SECONDS) -> bool:
    """Whether something accepts a TCP connection there: the machine's Talos API, configured or in maintenance."""
    try:
        with socket.create_connection((address, port), timeout=seconds):
            return True
    except OSError:
        return False


def not_seen(stack: StackConfig, leases: Sequence[dict[str, Any]], now: float | None = None, port: int = APID_PORT) -> list[str]:
    """Arda machines of the inventory the network has not seen: no answer on their Talos API and no current lease."""
    now = time.time() if now is None else now
    by_mac = {lease["mac"]: lease for lease in leases}
    machines = [n for n in stack.arda_nodes if n.vlan is None]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(16, len(machines)))) as pool:
        answers = dict(zip([n.name for n in machines], pool.map(lambda n: reachable(str(n.ip), port), machines), strict=True))
    out = []
    for node in machines:
        lease = by_mac.get(node.mac)
        current = lease is not None and (lease["expiry"] == 0 or lease["expiry"] > now)
        if answers[node.name] or current:
            continue
        held = "no lease" if lease is None else f"its lease ended {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(lease['expiry']))}"
        out.append(f"{node.name} ({node.mac}, {node.ip}): no answer on {node.ip}:{port}, {held}")
    return out


# --- the command --------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, path: Path) -> None:
    """The command, on the stack file at `path`; a DiscoverError says why it cannot (the CLI prints it, exit 2)."""
    try:
        stack = load_stack_file(path)
    except StackConfigError as e:
        if args.write:
            raise DiscoverError(
                f"{path} does not validate, and --write adds machines only to a stack that does; fix it first "
                f"(`iluvatar validate {path}` lists all {len(e.problems)} problems): {e.problems[0]}"
            ) from None
        raise
    if stack.discovery is None and not args.address:
        raise DiscoverError(
            f"{path}: iluvatar:arda.discovery is not set, so no unknown machine is booted to be discovered; "
            "add `discovery: {}` under iluvatar:arda and run `pulumi up`, or give --address IP of a machine you booted in maintenance mode yourself"
        )
    if args.arm or args.disarm:
        if stack.discovery is None:
            raise DiscoverError(
                f"{path}: iluvatar:arda.discovery is not set, so there is no discovery window to open; add `discovery: {{}}` under iluvatar:arda and run `pulumi up`"
            )
        seconds = 0 if args.disarm else window_seconds(args.arm)
        window = arm(args.kubeconfig, args.context, seconds, args.deadline)
        if seconds:
            until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(window["until"]))
            print(f"discovery window open until {until} ({window['configMap']} at {window['apiServer']}): power on the new machines now")
            print(f"then: iluvatar discover {path}; close it sooner with --disarm")
        else:
            print(f"discovery window closed ({window['configMap']} at {window['apiServer']}): unknown machines boot their own disks again")
        return
    for mac in args.wipe:
        if not plan.MAC.match(mac.lower()):
            raise DiscoverError(f"--wipe {mac}: give the MAC of a discovered machine (as its entry's comment says), e.g. --wipe 02:00:5e:00:0d:01")
    if args.role not in ARDA_ROLES:
        raise DiscoverError(f"--role {args.role}: a new Arda machine is istari (a worker) or valinor (a control plane)")
    found = ask(args.kubeconfig, args.context, args.address or [], leases=not args.no_leases, deadline=args.deadline)
    if found.leases_error:
        print(f"# the leases could not be read ({found.leases_error}); only the --address machines were asked")
    machines = [dataclasses.replace(m, arch=args.arch) if m.arch is None and args.arch else m for m in machines_of(found)]
    result = plan.plan(stack, machines, role=args.role, wipe=args.wipe)
    for mac in sorted({m.lower() for m in args.wipe} - {e.machine.mac for e in result.entries}):
        print(f"# --wipe {mac}: no machine waiting has that MAC, so nothing is wiped for it")
    print(f"# {len(result.entries)} machine{'s' if len(result.entries) != 1 else ''} waiting to be added to {path}")
    for m, name in result.known:
        print(f"# already in the inventory, still in maintenance mode: {name} ({m.mac}) at {m.address} (pulumi up applies its config)")
    if not machines and (args.no_leases or stack.ainur is None or stack.ainur.netboot.mode == "proxy"):
        print(
            "# no machine was asked: in proxy DHCP mode the Ainur hand out no addresses, so they hold no leases; "
            "give --address IP of each machine (your router's lease table shows it: a discovery-<arch>-<mac> hostname)"
        )
    _, indent = insert_entries(path.read_bytes().decode("utf-8"), path)
    for entry in result.entries:
        print("\n".join(line.removeprefix(indent) for line in entry_lines(entry, indent)))
    for line in not_seen(stack, found.leases):
        print(f"# not seen: {line}; if it is gone for good, retire it (docs/day2.md#retiring-a-disk-or-a-machine)")
    if args.write:
        added = write(path, stack, result.entries)
        skipped = sum(1 for entry in result.entries if entry.node is None)
        print(f"wrote {added} machine{'s' if added != 1 else ''} to {path}" + (f" ({skipped} as comments: see why above)" if skipped else ""))
        print(f"next: read the entries (name, role), then `iluvatar validate {path}` and `pulumi up`")
    elif any(entry.node is not None for entry in result.entries):
        print(f"# add them with: iluvatar discover {path} --write")
