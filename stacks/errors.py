"""Stack config errors: the problems found in a stack's configuration, each tied to its config path.

Validation collects every problem before anything is created, so a user fixes the whole
stack file in one pass instead of one error per `pulumi preview`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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
    """A value as the user wrote it, for error messages: strings bare (an empty one as "", a blank one
    as its repr, so it shows), the rest as repr."""
    if isinstance(value, str):
        return value if value.strip() else (repr(value) if value else '""')
    return repr(value)


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
