"""The docs' runbooks, run against the engine's rules: what their `pulumi` commands do to a stack's state.

A runbook's commands are read from its section of a page under docs/ (its ```sh blocks, and the `pulumi`
commands written inline that name what they act on: `'<urn of NAME>'`, `<the NAME URN>`, a `$(pulumi stack
--show-urns ...)`), with `<pi>` put in for the machine, and each `pulumi` command is worked out with
iluvatar.graph's model of engine v3.259 (`state delete`, `up --replace`); `$(pulumi stack --show-urns | grep -o
'REGEX')` is answered as the CLI prints URNs (pkg/cmd/pulumi/stack/stack.go:383-384, a line `URN: <urn>` each) and
grep -o matches them, and `<urn of NAME>` with the URN of the resource named NAME. Anything else in a block (kubectl)
is outside the engine and left out; an inline command that names nothing (`pulumi up`, a command mentioned in prose)
is not a step to check.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from iluvatar.graph import EngineRefusedError, Replacement, StateEntry, state_delete, up_replace

ROOT = Path(__file__).resolve().parent.parent
SUBSHELL = re.compile(r"\"?\$\(pulumi stack --show-urns \| grep -o '([^']*)'\)\"?")
# A resource named in prose: `'<urn of ainur-ilmare-host-key>'`, `<the ainur-credentials URN>`.
URN_OF = re.compile(r"'?<urn of ([^<>' ]+)>'?|<the ([^<>' ]+) URN>")
# A fenced block (```sh or another language) or an inline code span, in the order they come.
SPANS = re.compile(r"```(\w*)\n(.*?)```|`([^`]+)`", re.DOTALL)


def targeted(command: str) -> bool:
    """Whether an inline `pulumi` command names what it acts on (a runbook's step), not a mention of the command."""
    if not command.startswith("pulumi "):
        return False
    words = command.split()
    given = any(word in ("--replace", "--target") and i + 1 < len(words) for i, word in enumerate(words))
    return given or URN_OF.search(command) is not None or "$(pulumi stack --show-urns" in command or "urn:pulumi:" in command


def commands(page: str, heading: str, blocks: bool = True, **names: str) -> list[str]:
    """The shell commands of one section (`heading` to the next heading of its level or above), in their order: each
    line of its ```sh blocks (unless not `blocks`) and each inline `pulumi` command that names what it acts on."""
    text = "\n" + (ROOT / page).read_text()  # a heading on the first line too
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n")
    rest = text[start + len(heading) + 2 :]
    stop = re.search(rf"^#{{1,{len(level)}}} ", rest, re.MULTILINE)
    section = rest[: stop.start()] if stop else rest
    found = []

    def named(line: str) -> str:
        for key, value in names.items():
            line = line.replace(f"<{key}>", value)
        return line

    for match in SPANS.finditer(section):
        language, block, inline = match.groups()
        if inline is not None:
            # A span wrapped over lines in the Markdown source is one command.
            command = named(" ".join(inline.split()))
            if targeted(command):
                found.append(command)
            continue
        if language != "sh" or not blocks:
            continue
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.append(named(line))
    if not found:
        raise LookupError(f"no ```sh block and no inline `pulumi` command naming a resource in {page}, section {heading!r}")
    return found


def show_urns(entries: Sequence[StateEntry]) -> str:
    """What `pulumi stack --show-urns` prints that a grep can find: each resource's `URN: <urn>` line."""
    return "".join(f"        URN: {e.urn}\n" for e in entries)


def _expand(line: str, entries: Sequence[StateEntry]) -> str:
    def answer(match: re.Match[str]) -> str:
        pattern = match.group(1)
        # grep's basic regular expression, as the runbooks use it: `[^ ]*` and a final `$` mean the same in Python's.
        urns = [m.group(0) for text in show_urns(entries).splitlines() for m in [re.search(pattern, text)] if m]
        return " ".join(shlex.quote(u) for u in urns)

    def urn_of(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        urns = [e.urn for e in entries if e.name == name]
        if len(urns) != 1:
            raise LookupError(f"{len(urns)} resources named {name!r} in the state: {line}")
        return shlex.quote(urns[0])

    return URN_OF.sub(urn_of, SUBSHELL.sub(answer, line))


@dataclass
class Outcome:
    """What a runbook's commands did: the state after them, what left it, what was replaced, which deletes ran."""

    state: tuple[StateEntry, ...]
    removed: list[StateEntry] = field(default_factory=list)
    replaced: list[StateEntry] = field(default_factory=list)
    deletes: list[StateEntry] = field(default_factory=list)
    # Delete commands that ran before their own resource's new create (delete-before-replace).
    deletes_first: list[StateEntry] = field(default_factory=list)


def run(lines: Sequence[str], entries: Sequence[StateEntry]) -> Outcome:
    """Work out each `pulumi` command of `lines` on the state `entries` (the program unchanged between them)."""
    outcome = Outcome(tuple(entries))
    for line in lines:
        words = shlex.split(_expand(line, outcome.state))
        if words[:1] != ["pulumi"]:
            continue
        if words[1:3] == ["state", "delete"] or words[1:3] == ["state", "rm"]:
            args = words[3:]
            flags = {a for a in args if a.startswith("--")}
            if flags - {"--target-dependents", "--force", "--yes"}:
                raise ValueError(f"a flag the model does not know: {line}")
            urns = [a for a in args if not a.startswith("--")]
            if not urns:
                raise ValueError(f"no URN given (the grep found nothing?): {line}")
            outcome.state, removed = state_delete(outcome.state, urns, "--target-dependents" in flags, "--force" in flags)
            outcome.removed += removed
        elif words[1:3] == ["state", "unprotect"]:
            # unprotectResourcesInSnapshot (pkg/cmd/pulumi/state/state_unprotect.go:138-168): each URN named is
            # unprotected, one not in the state is an error.
            urns = [a for a in words[3:] if not a.startswith("-")]
            if not urns or len(urns) != len(words[3:]):
                raise ValueError(f"a form of `state unprotect` the model does not know: {line}")
            for urn in urns:
                if not any(e.urn == urn for e in outcome.state):
                    raise EngineRefusedError(f"No such resource {urn!r} exists in the current state")
            outcome.state = tuple(dataclasses.replace(e, protect=False) if e.urn in urns else e for e in outcome.state)
        elif words[1:2] == ["up"]:
            patterns, rest = [], words[2:]
            while rest:
                flag = rest.pop(0)
                if flag == "--replace":
                    patterns.append(rest.pop(0))
                elif flag not in ("--yes", "-y"):
                    raise ValueError(f"a flag the model does not know: {line}")
            done: Replacement = up_replace(outcome.state, patterns)
            outcome.replaced += done.replaced
            outcome.deletes += done.deletes
            outcome.deletes_first += done.deletes_first
        else:
            raise ValueError(f"a pulumi command the model does not know: {line}")
    return outcome
