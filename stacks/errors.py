"""Stack config errors: the problems found in a stack's configuration, each tied to its config path.

Validation collects every problem before anything is created, so a user fixes the whole
stack file in one pass instead of one error per `pulumi preview`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import yaml


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the stack config: where (a config path such as
    `iluvatar:nodes[3].ip`) and what, with the offending value in the message."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# eq=False: equal by its path and message, as any Problem.
@dataclass(frozen=True, eq=False)
class InDhcpRange(Problem):
    """A fixed address of the stack inside network.dhcpRange (`address`, as written). Two or more are one mistake, the
    range's (stacks.rules.dhcp_range_once), said once at network.dhcpRange."""

    address: str = ""


# eq=False: equal by its path and message, as any Problem.
@dataclass(frozen=True, eq=False)
class UnsetSecret(Problem):
    """A secret the stack needs that its stack file does not set yet (its message gives the `pulumi config set --secret`
    command). `pulumi preview` and `iluvatar validate` refuse the stack until it is set; the inventory itself is whole,
    so an offline render goes on with a placeholder (`iluvatar.simulate`) and lists what is left to set.

    `where` is the value's place in the stack config: the config key, then the keys under it for a value set with
    `--path` (an app's secret, a BMC's password).
    """

    where: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        """The `pulumi config set --secret ...` command its message gives (every UnsetSecret's message ends with one)."""
        return self.message.rsplit("run `", 1)[1].split("`", 1)[0]


def show(value: object) -> str:
    """A value as the user wrote it, for error messages, in the stack file's own spelling (YAML's flow style, as one
    line): a string bare (an empty one as "", a blank one quoted, so it shows), true/false, null, [a, b], {k: v}; a
    string inside a list or a mapping quoted where YAML would read it back as something else."""
    if isinstance(value, str):
        return value if value.strip() else (repr(value) if value else '""')
    return _flow(value)


class YamlInt(int):
    """An integer YAML read from text with a base prefix (0x, 0o, 0b), which its decimal cannot give back: the loader
    (stacks.load._go_yaml_number) keeps the text as written, for a message to quote."""

    text: str

    def __new__(cls, value: int, text: str) -> YamlInt:
        made = super().__new__(cls, value)
        made.text = text
        return made


_PREFIXED = {
    "0x": "a leading 0x makes hex digits a number to YAML",
    "0o": "a leading 0o makes digits an octal number to YAML",
    "0b": "a leading 0b makes binary digits a number to YAML",
}


def yaml_number_text(value: object, width: int) -> tuple[str, str] | None:
    """The text of `width` digits (a serial, hex digits that happen to be all digits or digits and one e) that YAML,
    reading it unquoted as Pulumi's yaml.v3 does (stacks.load._go_yaml_number), made the number `value` of, with how it
    read it; None when `value` is no number or no such text gives it. An infinity gives no text back: the digits an
    exponent too large for a float had are lost, so the first item is "" and the caller says so."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, YamlInt):
        return value.text, _PREFIXED[value.text.lstrip("+-")[:2].lower()]
    if isinstance(value, float) and math.isinf(value) and value > 0:
        return "", "digits, an e and digits are a number with an exponent to YAML, here too large for a float, so infinite"
    if isinstance(value, int) and value >= 0:
        if len(str(value)) == width:
            return str(value), "digits alone are a number to YAML"
        octal = f"{value:o}"
        if len(octal) < width:
            # Go's strconv.ParseInt(text, 0, 64), which yaml.v3 calls: a leading 0 means octal.
            return octal.rjust(width, "0"), "a leading 0 makes digits an octal number to YAML"
        return None
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        if value.is_integer() and len(str(int(value))) < width:
            # A leading 0 with an 8 or a 9 after it: no octal number, so yaml.v3 falls back to a float.
            return str(int(value)).rjust(width, "0"), "digits with a leading 0 and an 8 or a 9 are a decimal number to YAML"
        # Digits, an e and digits of `width` characters in all: the texts that read as `value` (1234e056 and 12340e55
        # alike), each said.
        texts = [
            text
            for digits in range(1, width - 1)
            for exponent in range(min(10 ** (width - 1 - digits), 309))
            if len(text := f"{round(value / 10**exponent)}e{exponent:0{width - 1 - digits}d}") == width and float(text) == value
        ]
        if texts:
            return " or ".join(dict.fromkeys(texts)), "digits, an e and digits are a number with an exponent to YAML"
    return None


def _flow(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        return (".inf" if value > 0 else "-.inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return value if _reads_back(value) else json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)  # an address, a network, a secret's placeholder: their own text


def _reads_back(text: str) -> bool:
    """Whether a string inside a flow list reads back as itself, unquoted (not a number, true, null, nor a mapping)."""
    if not text.strip() or text != text.strip():
        return False
    try:
        return bool(yaml.safe_load(f"[{text}]") == [text])
    except yaml.YAMLError:
        return False


class StackConfigError(Exception):
    """The stack config is invalid; carries every problem found, in config order."""

    def __init__(self, problems: Iterable[Problem], source: str = "stack config") -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.source = source
        super().__init__(self.report())

    def report(self) -> str:
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{self.source}: {count} {noun}:"]
        lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)

    def paths(self) -> list[str]:
        return [p.path for p in self.problems]

    def unset_secrets(self) -> tuple[UnsetSecret, ...]:
        return tuple(p for p in self.problems if isinstance(p, UnsetSecret))


class StackFileError(Exception):
    """The stack file is missing, unreadable, or not a Pulumi stack file at all."""
